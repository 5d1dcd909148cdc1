"""benchmarks/range_rules.py reads a suggestion's outcome off a table: checked against the table's store read
directly with sqlite3 (the trials' status and final_val_acc, not the curves Table.load reads). No range test runs."""

import importlib.util
import json
import math
import sqlite3
from pathlib import Path

import numpy as np
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
