"""benchmarks/tables_check.py and experiments/tables-check-cpu.toml, without training: the pass rule on hand-made
runs tables (a cell that agrees passes; one whose real success rate, or median best, is far off fails and is named),
and the real suite's problems against the tables' own definitions (experiments/tables/*.toml, the tables' recorded
experiment.json) and experiments/suite-cpu-tables.toml's problems."""

import dataclasses
import importlib.util
import json
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lrsearch.experiment.config import read_toml
from lrsearch.experiment.suite import Suite, load_config
from lrsearch.training.tasks import get_task

ROOT = Path(__file__).resolve().parents[1]
REAL_SUITE = ROOT / "experiments" / "tables-check-cpu.toml"
TABLES_SUITE = ROOT / "experiments" / "suite-cpu-tables.toml"


def load_check():
    spec = importlib.util.spec_from_file_location("tables_check", ROOT / "benchmarks" / "tables_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


check = load_check()


def runs(problem: str, strategy: str, seeds: int, reached: int, best: float, seed: int) -> pd.DataFrame:
    """`seeds` runs of which the first `reached` reached the target; best accuracies about `best` (sd 0.003, the
    spread of a 5,000-image reading is 0.007)."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"problem": problem, "strategy": strategy, "seed": range(seeds),
                         "best_val_acc": rng.normal(best, 0.003, seeds), "reached_target": np.arange(seeds) < reached})


def test_a_cell_that_agrees_passes_and_cells_far_off_fail_by_name():
    table = pd.concat([runs("nobn-lr", s, 100, 100, 0.46, i) for i, s in
                       enumerate(["random", "optuna-tpe", "hyperopt-tpe"])], ignore_index=True)
    real = pd.concat([runs("nobn-lr", "random", 10, 10, 0.46, 10),  # as the table
                      runs("nobn-lr", "optuna-tpe", 10, 3, 0.46, 11),  # 3 of 10 against 100 of 100
                      runs("nobn-lr", "hyperopt-tpe", 10, 10, 0.40, 12)],  # 6 points below the table
                     ignore_index=True)
    cells = check.compare(real, table, [("nobn-lr", s) for s in ["random", "optuna-tpe", "hyperopt-tpe"]])
    status = dict(zip(cells["strategy"], cells["status"]))
    assert status == {"random": "pass", "optuna-tpe": "fail", "hyperopt-tpe": "fail"}
    by = cells.set_index("strategy")
    assert not by.loc["optuna-tpe", "success_overlap"] and by.loc["optuna-tpe", "best_overlap"]
    assert by.loc["hyperopt-tpe", "success_overlap"] and not by.loc["hyperopt-tpe", "best_overlap"]
    assert by.loc["optuna-tpe", "real_success_rate"] == 0.3 and by.loc["optuna-tpe", "table_seeds"] == 100
    assert check.verdict(cells) == "FAIL"

    text = check.report_text(cells, check.rank_agreement(cells), "sources", "provenance")
    fails = [line for line in text.splitlines() if line.startswith("- FAIL ")]
    assert len(fails) == 2
    assert "nobn-lr / optuna-tpe" in fails[0] and "success rate" in fails[0]
    assert "nobn-lr / hyperopt-tpe" in fails[1] and "median best" in fails[1]
    assert "**Verdict: FAIL**" in text and check.PASS_RULE in text


def test_every_cell_agreeing_passes_and_too_few_seeds_or_no_table_runs_is_incomplete():
    table = runs("p", "random", 100, 97, 0.46, 0)
    cells = check.compare(runs("p", "random", 10, 10, 0.46, 1), table, [("p", "random")])
    assert check.verdict(cells) == "PASS"
    cells = check.compare(runs("p", "random", 6, 6, 0.46, 1), table, [("p", "random"), ("q", "random")])
    assert list(cells["status"]) == ["incomplete", "incomplete"]
    assert "6 complete real seeds" in cells["reason"][0] and "no runs on the tables" in cells["reason"][1]
    assert check.verdict(cells) == "INCOMPLETE"
    # a problem whose two sides trained different things is not judged, however well it agrees
    cells = check.compare(runs("p", "random", 10, 10, 0.46, 1), table, [("p", "random")], {"p": ["task.epochs: ..."]})
    assert cells["status"][0] == "incomplete" and "task.epochs" in cells["reason"][0]


def test_kendall_tau_of_three_strategies_cannot_tell_agreement_from_chance():
    # the pass rule's reason for not judging tau: of the 3! = 6 orders one agrees and one reverses, so perfect
    # agreement has a two-sided exact p-value of 2/6
    table = pd.concat([runs("p", s, 100, 100, b, i) for i, (s, b) in
                       enumerate([("random", 0.45), ("optuna-tpe", 0.46), ("hyperopt-tpe", 0.47)])])
    real = pd.concat([runs("p", s, 10, 10, b, 10 + i) for i, (s, b) in
                      enumerate([("random", 0.45), ("optuna-tpe", 0.46), ("hyperopt-tpe", 0.47)])])
    cells = check.compare(real, table, [("p", s) for s in ["random", "optuna-tpe", "hyperopt-tpe"]])
    ranks = check.rank_agreement(cells).set_index("scope")
    assert ranks.loc["p", "cells"] == 3 and ranks.loc["p", "kendall_tau"] == pytest.approx(1.0)
    assert ranks.loc["p", "p_value"] == pytest.approx(2 / 6)


# ------------------------------------------------------------ the real suite is the tables' suite, trained


def tables_suite_nobn() -> Suite:
    """experiments/suite-cpu-tables.toml as written, its nobn problems only (the others' tables are not needed)."""
    raw = read_toml(TABLES_SUITE)
    return Suite(**{**raw, "problems": [p for p in raw["problems"] if p["task"] == "nobn"]})


def test_the_real_suite_is_the_tables_suite_on_its_nobn_problems_for_real(monkeypatch):
    monkeypatch.chdir(ROOT)  # the configs' relative paths (tables, calibration)
    suite = load_config(REAL_SUITE)
    assert isinstance(suite, Suite)
    real = {Path(e.results).name: e for e in suite.experiments()}
    tables = {Path(e.results).name: e for e in tables_suite_nobn().experiments()}
    assert sorted(real) == sorted(tables) == ["nobn-lr", "nobn-lr-wd-mom"]
    assert suite.results == "results/tables-check-cpu" and suite.seeds == list(range(10))
    for name, e in real.items():
        t = tables[name]
        assert e.executor.kind == "local" and e.table is None and t.executor.kind == "simulated"
        assert set(e.strategies) == {"random", "optuna-tpe", "hyperopt-tpe"} <= set(t.strategies)
        assert e.budgets == t.budgets == [16] and e.calibration == t.calibration == "results/calibration"
        assert e.search_space().to_dict() == t.search_space().to_dict()
        assert e.target_value() == t.target_value()
        assert {s: e.options.get(s) for s in e.strategies} == {s: t.options.get(s) for s in e.strategies}

        # the training: the table's own config (experiments/tables/<table>.toml, its task_overrides) and what the
        # table recorded it trained (results/tables/<table>/experiment.json)
        folder = Path(t.table)
        config = read_toml(ROOT / "experiments" / "tables" / f"{folder.name}.toml")
        from_config = get_task(config["task"], **config["task_overrides"])
        recorded = json.loads((ROOT / folder / "experiment.json").read_text())["task"]
        mine = json.loads(json.dumps(dataclasses.asdict(e.task_spec())))
        assert e.task_spec() == dataclasses.replace(from_config, target_acc=e.target_value())
        assert {k: v for k, v in mine.items() if k not in check.NOT_TRAINING} == \
               {k: v for k, v in recorded.items() if k not in check.NOT_TRAINING}
        assert e.target_value() == config.get("target_acc", from_config.target_acc) == recorded["target_acc"]


def write_side(folder: Path, experiment, frame: pd.DataFrame) -> None:
    (folder / "tables").mkdir(parents=True)
    experiment.write_json(folder)
    frame.assign(budget=16, run_status="complete").to_csv(folder / "tables" / "runs.csv", index=False)


def test_check_end_to_end_on_hand_made_runs_with_both_suites_real_definitions(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # the configs' relative paths (tables, calibration)
    real_root, table_root = tmp_path / "real", tmp_path / "tables"
    suite = load_config(REAL_SUITE)
    real_root.mkdir()
    (real_root / "suite.json").write_text(suite.model_dump_json())
    tables = {Path(e.results).name: e for e in tables_suite_nobn().experiments()}
    for i, e in enumerate(suite.experiments(real_root)):
        name = Path(e.results).name
        write_side(real_root / name, e, pd.concat([runs(name, s, 10, 10 if (name, s) != ("nobn-lr", "random") else 2,
                                                        0.45, 10 * i + j) for j, s in enumerate(e.strategies)]))
        write_side(table_root / name, tables[name], pd.concat([runs(name, s, 100, 100, 0.45, 100 + 10 * i + j)
                                                               for j, s in enumerate(e.strategies)]))
    # the two sides' recorded definitions agree (the one on the tables as the committed suite-cpu-tables wrote it)
    committed = json.loads((ROOT / "results" / "suite-cpu-tables" / "nobn-lr" / "experiment.json").read_text())
    mine = json.loads((real_root / "nobn-lr" / "experiment.json").read_text())
    assert check.definition_differences(mine, committed, suite.strategies) == []

    assert check.main(["--real", str(real_root), "--tables", str(table_root)]) == 1
    cells = pd.read_csv(real_root / "check" / "check.csv")
    assert list(cells.loc[cells["status"] != "pass", ["problem", "strategy", "status"]].itertuples(index=False,
                name=None)) == [("nobn-lr", "random", "fail")]
    report = (real_root / "check" / "REPORT.md").read_text()
    assert "**Verdict: FAIL**" in report and "- FAIL nobn-lr / random" in report and "git commit" in report
    assert len(pd.read_csv(real_root / "check" / "ranks.csv")) == 3  # all cells, and each of the two problems


def test_without_real_runs_it_says_to_run_make_tables_check(tmp_path):
    with pytest.raises(SystemExit, match="make tables-check"):
        check.main(["--real", str(tmp_path / "nothing")])
    (tmp_path / "started").mkdir()
    (tmp_path / "started" / "suite.json").write_text(load_config(REAL_SUITE).model_dump_json())
    with pytest.raises(SystemExit, match="make tables-check"):
        check.main(["--real", str(tmp_path / "started")])


def test_a_runs_table_older_than_its_store_stops_with_the_command_that_rebuilds_it(tmp_path):
    folder = tmp_path / "suite" / "nobn-lr"
    (folder / "tables").mkdir(parents=True)
    runs("nobn-lr", "random", 2, 2, 0.45, 0).assign(budget=16, run_status="complete").to_csv(
        folder / "tables" / "runs.csv", index=False)
    with sqlite3.connect(folder / "results.sqlite") as db:  # the store's runs table, as far as the check reads it
        db.execute("CREATE TABLE runs (strategy TEXT, budget INTEGER, seed INTEGER, status TEXT)")
        db.executemany("INSERT INTO runs VALUES (?, ?, ?, ?)",
                       [("random", 16, 0, "complete"), ("random", 16, 1, "complete"), ("random", 16, 2, "running")])
    assert len(check.read_runs(tmp_path / "suite", 16)) == 2  # a run still training is not missing
    with sqlite3.connect(folder / "results.sqlite") as db:
        db.execute("UPDATE runs SET status = 'complete' WHERE seed = 2")
    with pytest.raises(SystemExit, match="lrsearch report"):
        check.read_runs(tmp_path / "suite", 16)
