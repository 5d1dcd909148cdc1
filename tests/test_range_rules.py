"""benchmarks/range_rules.py reads a suggestion's outcome off a table: checked against the table's store read
directly with sqlite3 (the trials' status and final_val_acc, not the curves Table.load reads). No range test runs."""

import importlib.util
import json
import math
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOBN = ROOT / "results" / "tables" / "nobn"
TARGET = 0.43  # tasks.py's nobn target
CHANCE = 0.1  # ten classes: where range_rules.py scores a diverged run


def load_benchmark():
    spec = importlib.util.spec_from_file_location("range_rules", ROOT / "benchmarks" / "range_rules.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def reference(lr: float) -> tuple[float, float, float]:
    """(mean final val_acc with a diverged run at chance, share reaching the target, share diverged) at the recorded
    LR `lr`, over the tabulated seeds, straight from results.sqlite."""
    with sqlite3.connect(NOBN / "results.sqlite") as db:
        rows = db.execute("SELECT t.params, t.status, t.final_val_acc FROM trials t JOIN runs r USING (run_id) "
                          "WHERE r.strategy = 'grid' AND t.kind = 'train'").fetchall()
    here = [(status, acc) for params, status, acc in rows if math.isclose(json.loads(params)["lr"], lr, rel_tol=1e-9)]
    assert len(here) == 10
    values = [acc if status == "ok" else None for status, acc in here]  # a diverged run has no result
    mean = sum(CHANCE if v is None else v for v in values) / len(values)
    reach = sum(v is not None and v >= TARGET for v in values) / len(values)
    return mean, reach, sum(v is None for v in values) / len(values)


@pytest.fixture(scope="module")
def outcomes():
    from lrsearch.experiment.table import Table

    rules = load_benchmark()
    return rules, rules.lr_outcomes(Table.load(NOBN), TARGET, CHANCE)


@pytest.mark.skipif(not (NOBN / "results.sqlite").exists(), reason="the nobn table is not in this checkout")
@pytest.mark.parametrize("index", [17, 24])  # the best LR (none diverged), and 0.21 (2 of 10 seeds diverged)
def test_outcome_at_a_suggestion_is_the_tables_own_reading_at_the_nearest_lr_in_log_scale(outcomes, index):
    rules, table = outcomes
    lrs = table["lr"].to_numpy()
    lr = float(lrs[index])
    mean, reach, diverged = reference(lr)
    # a suggestion just on this LR's side of the geometric midpoints to its neighbours snaps to it
    for suggested in (math.sqrt(lrs[index - 1] * lr) * 1.01, lr, math.sqrt(lr * lrs[index + 1]) * 0.99):
        found = rules.outcome_at(table, suggested)
        assert found["table_lr"] == lr
        assert found["mean_val_acc"] == pytest.approx(mean, abs=1e-12)
        assert found["reach_share"] == pytest.approx(reach)
        assert found["diverged_share"] == pytest.approx(diverged)
    best = max(reference(float(x))[0] for x in lrs)
    assert found["best_mean"] == pytest.approx(best) and found["regret"] == pytest.approx(best - mean)


@pytest.mark.skipif(not (NOBN / "results.sqlite").exists(), reason="the nobn table is not in this checkout")
def test_a_rule_that_finds_nothing_scores_nan_and_says_why(outcomes):
    rules, table = outcomes
    lrs = list(np.geomspace(1e-3, 1.0, 30))
    rising = list(np.linspace(2.3, 3.0, 30))  # a loss that never falls: Smith's loss rule finds no range
    found = {r["rule"]: r for r in rules.suggestions({"lrs": lrs, "losses": rising, "eval_lrs": lrs[::3],
                                                      "eval_accs": list(np.linspace(0.1, 0.4, 10))})}
    assert set(found) == set(rules.RULE_NAMES)
    assert math.isnan(found["smith-loss"]["lr"]) and "never falls" in found["smith-loss"]["error"]
    assert math.isnan(rules.outcome_at(table, found["smith-loss"]["lr"])["regret"])
    assert found["smith-acc"]["base_lr"] < found["smith-acc"]["lr"]  # the accuracy rises: a range, max_lr scored


def test_a_trained_run_is_read_at_the_target_and_summarized_with_its_cost():
    """Five lr-range-clr runs per Smith rule on nobn (target 0.43, chance 0.1): a diverged run never reaches the
    target and scores chance in the regret and the median; a rule without a range trains nothing and counts short."""
    from lrsearch.reporting.tables import wilson_interval

    rules = load_benchmark()
    finals = {"smith-acc": [0.45, 0.44, 0.42, 0.50, 0.43], "smith-loss": [0.47, None, 0.40, None, math.nan]}
    statuses = {"smith-acc": ["ok"] * 5, "smith-loss": ["ok", "diverged", "ok", "diverged", None]}  # the last: no range
    trained = pd.DataFrame([{"strategy": "lr-range-clr", "workload": "nobn", "seed": seed, "rule": rule,
                             "status": statuses[rule][seed], "final_val_acc": finals[rule][seed],
                             "best_val_acc": finals[rule][seed], "steps": 150 if statuses[rule][seed] else math.nan,
                             "wall_s": 10.0, "range_steps": 120 + seed} for rule in finals for seed in range(5)])
    read = rules.read_trained(trained, pd.DataFrame({"workload": ["nobn"], "best_mean": [0.46]}))
    assert read["reached"].tolist() == [True, True, False, True, True, True, False, False, False, False]
    assert read["regret"].iloc[6] == pytest.approx(0.46 - CHANCE) and math.isnan(read["regret"].iloc[9])
    found = rules.summarize_trained(read).set_index("rule")
    assert found.loc["smith-acc", "reach_share"] == 0.8
    assert (found.loc["smith-acc", "reach_ci_low"], found.loc["smith-acc", "reach_ci_high"]) == wilson_interval(4, 5)
    assert found.loc["smith-acc", "median_val_acc"] == pytest.approx(0.44)
    assert found.loc["smith-acc", "median_regret"] == pytest.approx(0.02)
    loss = found.loc["smith-loss"]
    assert (loss["seeds"], loss["no_range"], loss["reach_share"], loss["diverged_share"]) == (5, 1, 0.2, 0.4)
    assert loss["median_val_acc"] == pytest.approx((0.40 + CHANCE) / 2)  # 0.47, 0.40 and two diverged at chance
    assert loss["total_steps_median"] == pytest.approx(150 + 121.5)  # over the four runs trained: 120, 121, 122, 123


def synthetic_summaries() -> tuple[pd.DataFrame, pd.DataFrame]:
    """A summary of every rule on two workloads and a trained summary of both Smith rules, with distinct cells."""
    rules = load_benchmark()
    summary = pd.DataFrame([{"workload": w, "rule": r, "seeds": 20, "good_share": 0.05 * (k + j),
                             "good_ci_low": 0.05 * (k + j) / 2, "good_ci_high": 0.05 * (k + j) + 0.2,
                             "median_regret": 0.011 * (k + 1) + 0.003 * j, "regret_ci_low": 0.0, "regret_ci_high": 0.2}
                            for j, w in enumerate(["nobn", "finetune"]) for k, r in enumerate(rules.RULE_NAMES)])
    trained = pd.DataFrame([{"strategy": "lr-range-clr", "workload": w, "rule": r, "seeds": 20,
                             "reach_share": 0.45 + 0.1 * j + 0.2 * k, "reach_ci_low": 0.25, "reach_ci_high": 0.85,
                             "median_regret": 0.1 - 0.02 * k + 0.005 * j, "regret_ci_low": 0.001, "regret_ci_high": 0.3}
                            for j, w in enumerate(["nobn", "finetune"]) for k, r in enumerate(rules.SMITH)])
    return summary, trained


def test_the_reading_is_written_from_the_summaries_cells(tmp_path):
    rules = load_benchmark()
    summary, trained = synthetic_summaries()
    text = rules.reading(summary, trained)
    assert 3 <= text.count(". ") + 1 <= 6
    # the most frequent good LR on finetune is steepest_gradient's (0.35); the lowest worst regret smith-acc's max_lr's
    assert "35% on finetune (steepest_gradient, [18%, 55%])" in text
    assert "the choice to trust is smith-acc's max_lr on the task's schedule: its median regret" in text
    assert "at most 1.4 [0.0, 20.0] on any workload (1.1 on nobn and 1.4 on finetune)" in text
    assert "smith-loss's range reaches the target in 65% [25%, 85%] of 20 runs on nobn and 75% [25%, 85%] on finetune" in text
    assert "with a median regret of 8.0 and 8.5 points against 2.2 and 2.5 when its max_lr" in text
    assert "how lr-range-1cycle would do was not measured" in text

    summary.loc[(summary["workload"] == "finetune") & (summary["rule"] == "smith-acc"), "median_regret"] = 0.123
    trained.loc[(trained["workload"] == "nobn") & (trained["rule"] == "smith-loss"), "reach_share"] = 0.9
    changed = rules.reading(summary, trained)
    assert "1.4 on finetune" not in changed and "12.3" in changed
    assert "90% [25%, 85%] of 20 runs on nobn" in changed
    assert "the choice to trust is smith-loss's max_lr on the task's schedule" in changed  # 2.5 points at worst now

    summary.to_csv(tmp_path / "summary.csv", index=False)
    trained.to_csv(tmp_path / "trained_summary.csv", index=False)
    finding = rules.finding_sentence(tmp_path)
    assert finding.count(". ") == 0 and finding.endswith(f"([report]({tmp_path.as_posix()}/REPORT.md)).")
    assert "smith-loss's max_lr on the task's schedule is the choice to trust" in finding
    assert "at most 2.5 accuracy points on any workload (on finetune), against up to 3.6 for the next best, valley" in finding
    assert "a margin the intervals do not resolve" in finding  # both intervals [0, 20] points
