"""The self-tuning contenders beside the searchers: who beat a 2-trial range test and a model-based search.

A self-tuning optimizer (lrsearch/search/strategies/self_tuning.py) makes one trial per seed, whatever the
budget (AlgoPerf's self-tuning rule), so its row in a summary is one run of its own against searches that spent
the whole budget. These helpers read a problem's summary table (tables.py) and say, per contender, whether its
median best validation value and its median search time-to-target beat each reference strategy's.
"""

from __future__ import annotations

import math

import pandas as pd

from lrsearch.search.strategies import is_self_tuning

# What a contender is compared with: the two-trial range tests (Smith's) and a model-based search at the budget.
REFERENCES = ("lr-range-1cycle", "lr-range-clr", "optuna-tpe")


def comparison(summary: pd.DataFrame, direction: str = "maximize") -> pd.DataFrame:
    """One row per (contender, reference) of a summary at its largest budget: both medians (best value and
    search time-to-target) and whether the contender beat the reference on each (a strictly better best
    value; a strictly shorter time-to-target, where the contender reached the target at all)."""
    if summary.empty:
        return pd.DataFrame()
    at = summary[summary["budget"] == summary["budget"].max()].set_index("strategy")
    sign = 1.0 if direction == "maximize" else -1.0
    rows = []
    for contender in [s for s in at.index if is_self_tuning(s)]:
        c = at.loc[contender]
        for reference in [r for r in REFERENCES if r in at.index]:
            r = at.loc[reference]
            c_ttt, r_ttt = float(c["median_time_to_target_s"]), float(r["median_time_to_target_s"])
            rows.append({"contender": contender, "reference": reference, "budget": int(c["budget"]),
                         "contender_best": float(c["median_best_val_acc"]), "reference_best": float(r["median_best_val_acc"]),
                         "contender_ttt_s": c_ttt, "reference_ttt_s": r_ttt,
                         "contender_success": float(c["success_rate"]), "reference_success": float(r["success_rate"]),
                         "beats_on_value": sign * (float(c["median_best_val_acc"]) - float(r["median_best_val_acc"])) > 0,
                         "beats_on_time": math.isfinite(c_ttt) and c_ttt < r_ttt})
    return pd.DataFrame(rows)


def contender_lines(summary: pd.DataFrame, direction: str = "maximize") -> list[str]:
    """REPORT.md lines: what the contenders are, and one line saying who beat whom."""
    table = comparison(summary, direction)
    if table.empty:
        return []
    budget = int(table["budget"].iloc[0])
    lines = ["## Self-tuning contenders", "",
             f"Each learning-rate-free optimizer trains one run per seed at its authors' settings (AlgoPerf's "
             f"self-tuning rule): **{budget - 1} of the {budget} trials of its budget are unused**, and it searched "
             "nothing (the space notes above say what it fixed). Against the two-trial range tests and optuna-tpe "
             f"at budget {budget}, on the median best validation value and the median search time-to-target:", "",
             table.to_markdown(index=False, floatfmt=".3g"), ""]
    lines += [summary_line(table), ""]
    return lines


def summary_line(table: pd.DataFrame) -> str:
    """'Beat every reference on best value: a, b; on time-to-target: c' (or 'none')."""
    def winners(column: str) -> str:
        won = table.groupby("contender")[column].all()
        names = sorted(won[won].index)
        return ", ".join(names) if names else "none"

    references = ", ".join(sorted(table["reference"].unique()))
    return (f"Beat every reference ({references}) on median best value: {winners('beats_on_value')}; "
            f"on median time-to-target: {winners('beats_on_time')}.")
