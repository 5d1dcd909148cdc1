"""Workloads: the user's own (a plain objective, a ModelWorkload) through the runner, loading errors, the
definition check on user code, and suites."""

from __future__ import annotations

import json
import math
import re
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from lrsearch.experiment.config import ConfigError, Experiment, load_experiment
from lrsearch.training.workloads import FunctionWorkload, WorkloadError, load_workload

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lrsearch", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600)


# ---------------------------------------------------------------- a plain objective


def test_function_workload_times_reports_and_stops_when_told():
    def objective(params, report, seed):
        for step in range(1, 6):
            time.sleep(0.02)
            if report(step, step * params["x"] + seed, loss=1.0 / step, eval_s=0.01):
                return

    workload = FunctionWorkload(objective, target=3.0)
    seen = []
    result = workload.trial({"x": 1.0}, seed=0, report=lambda step, value: seen.append(value) or step == 3)
    assert result.status == "pruned" and result.steps == 3 and seen == [1.0, 2.0, 3.0]
    assert [row["val_acc"] for row in result.curve] == [1.0, 2.0, 3.0]
    assert result.time_to_target_s is not None and result.steps_to_target == 3
    # three 0.02 s sleeps, each less the 0.01 s the function says it spent evaluating
    assert 0.025 < result.train_s < 0.2 and result.eval_s == pytest.approx(0.03)
    assert workload.trial({"x": 1.0}, seed=2).final_val_acc == 7.0  # the seed reaches the function


def test_function_workload_minimises_and_records_failures_and_divergence():
    def objective(params, report):
        if params["x"] < 0:
            raise RuntimeError("no negative x")
        report(1, params["x"] ** 2 if params["x"] < 10 else math.inf)

    workload = FunctionWorkload(objective, direction="minimize", target=1.0)
    assert workload.trial({"x": 0.5}).time_to_target_s is not None
    assert workload.score(0.25) == -0.25  # a search maximises the negated loss
    assert workload.trial({"x": -1}).status == "failed"
    assert workload.trial({"x": 20}).status == "diverged"


def test_a_plain_objective_runner_records_it_exactly_and_refuses_range_tests(tmp_path):
    code = tmp_path / "quad.py"
    code.write_text(textwrap.dedent("""
        def objective(params, report):
            for epoch in range(3):
                report(epoch, (params["lr"] - 0.1) ** 2 + (params["width"] - 4) ** 2 / (epoch + 1))
    """))
    spec = f"{code}:objective"
    common = dict(name="quad", task=spec, budgets=[6], seeds=[0], direction="minimize", target=0.5,
                  space={"lr": {"low": 1e-3, "high": 1.0, "log": True}, "width": {"low": 1, "high": 8}})
    with pytest.raises(ConfigError, match="lr-range-clr: .* plain objective"):
        Experiment(strategies=["random", "lr-range-clr"], **common)
    from lrsearch import load_results, run_experiment

    out = run_experiment(Experiment(strategies=["random", "optuna-tpe"], results=str(tmp_path / "out"), **common))
    results = load_results(out)
    assert len(results.trials) == 12 and set(results.trials["status"]) == {"ok"}
    assert set(results.trials.columns) >= {"params_lr", "params_width"}
    for trial in results.trials.itertuples():  # the value a search saw is the negated last reported loss
        curve = results.curves[results.curves["trial_id"] == trial.trial_id].sort_values("step")
        assert len(curve) == 3 and trial.value == pytest.approx(-curve["val_acc"].iloc[-1])
    definition = json.loads(results.runs["definition"].iloc[0])
    assert definition["function"] == spec and definition["source_sha256"]

    # the function's code is part of what a run trains: a changed file stops the next run on that folder
    code.write_text(code.read_text().replace("- 0.1", "- 0.2"))
    from lrsearch.experiment.claims import DefinitionChanged
    with pytest.raises(DefinitionChanged, match="source_sha256"):
        run_experiment(Experiment(strategies=["random", "optuna-tpe"], results=str(tmp_path / "out"), **common))


def test_loading_errors_name_the_spec_and_the_fix(tmp_path):
    (tmp_path / "w.py").write_text("x = 3\ndef nothing():\n    return 42\ndef broken():\n    raise OSError('no data')\n")
    cases = {f"{tmp_path}/missing.py:f": "no such file", f"{tmp_path}/w.py:absent": "has no attribute 'absent'",
             f"{tmp_path}/w.py:x": "not a function", f"{tmp_path}/w.py:nothing": "returned int; expected",
             f"{tmp_path}/w.py:broken": "calling broken() failed: OSError: no data",
             "no_such_package.mod:fn": "cannot import module"}
    for spec, message in cases.items():
        with pytest.raises(WorkloadError, match=re.escape(message)) as info:
            load_workload(spec)
        assert spec in str(info.value)
    with pytest.raises(ConfigError, match="field 'task'.*has no attribute"):
        Experiment(name="e", task=f"{tmp_path}/w.py:absent", strategies=["random"], budgets=[2], seeds=[0])


def test_a_dict_description_with_an_unknown_key_is_refused(tmp_path):
    (tmp_path / "d.py").write_text("def workload():\n    return {'model': None, 'epoch': 3}\n")
    with pytest.raises(WorkloadError, match="unknown key\\(s\\) epoch"):
        load_workload(f"{tmp_path}/d.py:workload")


def test_a_builtin_task_refuses_a_parameter_it_does_not_train():
    with pytest.raises(ConfigError, match="space: width: not a parameter of smoke"):
        Experiment(name="e", task="smoke", strategies=["random"], budgets=[2], seeds=[0],
                   space={"lr": {"low": 1e-3, "high": 1.0, "log": True}, "width": {"low": 1, "high": 8}})


# ---------------------------------------------------------------- the examples/ workload, end to end


@pytest.mark.slow
def test_examples_digits_runs_through_lrsearch_run_and_load_results(tmp_path):
    config = tmp_path / "digits.toml"
    config.write_text((ROOT / "examples" / "digits.toml").read_text()
                      .replace('strategies = ["random", "optuna-tpe", "lr-range-1cycle"]',
                               'strategies = ["random", "lr-range-1cycle"]')
                      .replace("budgets = [6]", "budgets = [3]").replace("seeds = [0, 1]", "seeds = [0]")
                      .replace("[options.optuna-tpe]\nn_startup_trials = 3\n", ""))
    out = tmp_path / "out"
    done = _cli("run", str(config), "--results", str(out))
    assert done.returncode == 0, done.stderr
    from lrsearch import load_results

    results = load_results(out)
    trials = results.trials
    assert sorted(trials["strategy"].unique()) == ["lr-range-1cycle", "random"]
    train = trials[trials["kind"] == "train"]
    assert len(train[train["strategy"] == "random"]) == 3 and set(train["status"]) <= {"ok", "diverged"}
    assert (trials["kind"] == "range_test").sum() == 1  # the range test ran on the user's model
    best = train["value"].max()
    assert 0.5 < best <= 1.0  # an accuracy on 500 digits: a good LR learns them
    report = (out / "REPORT.md").read_text()
    assert "examples/digits.py:workload" in report
    # the range test searches lr alone: the report says that momentum stayed at the workload's default
    assert "**flattened / ignored** lr-range-1cycle" in report and "momentum" in report
    again = _cli("run", str(config), "--results", str(out))  # resumes: nothing left to train
    assert again.returncode == 0
    assert len(load_results(out).trials) == len(trials)


# ---------------------------------------------------------------- suites


SUITE = """
name = "mini-suite"
strategies = ["random", "grid"]
budgets = [3]
seeds = [0, 1]

[[problems]]
task = "{code}:objective"
direction = "minimize"
target = 0.05
[problems.spaces.lr]
lr = {{ low = 1e-3, high = 1.0, log = true }}
[problems.spaces.lr-width]
lr = {{ low = 1e-3, high = 1.0, log = true }}
width = {{ low = 1, high = 8 }}
"""


def test_a_suite_runs_every_problem_into_its_folder_and_resumes(tmp_path):
    code = tmp_path / "quad.py"
    code.write_text("def objective(params, report):\n"
                    "    report(1, (params['lr'] - 0.1) ** 2 + (params.get('width', 4) - 4) ** 2)\n")
    suite = tmp_path / "suite.toml"
    suite.write_text(SUITE.format(code=code))
    out = tmp_path / "out"
    done = _cli("run", str(suite), "--results", str(out))
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["objective-lr", "objective-lr-width", "scores"]
    report = (out / "REPORT.md").read_text()
    assert "objective-lr-width" in report and "separated_by_value" in report
    counts = {}
    for problem in ("objective-lr", "objective-lr-width"):
        with sqlite3.connect(out / problem / "results.sqlite") as conn:
            counts[problem] = conn.execute("SELECT COUNT(*) FROM trials").fetchone()[0]
            assert {r for (r,) in conn.execute("SELECT status FROM runs")} == {"complete"}
            per_strategy = dict(conn.execute("SELECT strategy, COUNT(*) FROM trials JOIN runs USING (run_id) "
                                             "GROUP BY strategy").fetchall())
        assert per_strategy["random"] == 6 and 2 <= per_strategy["grid"] <= 6  # 2 seeds x budget 3; grid may use less
    again = _cli("run", str(suite), "--results", str(out), "--seeds", "0")
    assert again.returncode == 0, again.stderr
    for problem, n in counts.items():
        with sqlite3.connect(out / problem / "results.sqlite") as conn:
            assert conn.execute("SELECT COUNT(*) FROM trials").fetchone()[0] == n
    rebuilt = _cli("report", str(out))
    assert rebuilt.returncode == 0 and "REPORT.md" in rebuilt.stdout


def test_a_suite_names_the_bad_problem(tmp_path):
    suite = tmp_path / "suite.toml"
    suite.write_text(SUITE.format(code=tmp_path / "missing.py").replace("width = {", "wd = {"))
    from lrsearch.experiment.suite import load_config

    with pytest.raises(ConfigError, match=r"problems\[0\].spaces.lr.*no such file"):
        load_config(suite)
    assert isinstance(load_config(ROOT / "experiments" / "benchmark-smoke.toml"), Experiment)
    with pytest.raises(ConfigError, match="no such experiment file"):
        load_experiment(tmp_path / "nope.toml")


def test_a_self_tuning_strategy_runs_in_each_workloads_first_space_only():
    """It searches nothing, so a second space would train the same trials again."""
    from lrsearch.experiment.suite import load_config

    experiments = {e.name: e for e in load_config(ROOT / "experiments" / "suite-cpu.toml").experiments()}
    first, second = experiments["suite-cpu.nobn-lr"], experiments["suite-cpu.nobn-lr-wd-mom"]
    assert "prodigy" in first.strategies and "prodigy" not in second.strategies
    assert [s for s in first.strategies if s in second.strategies] == second.strategies
    assert "random" in second.strategies and "lr-range-clr" in second.strategies


def test_a_suite_searches_each_problem_on_its_table(tmp_path, capsys):
    """`lrsearch replay SUITE`: every problem answered from its table through the one runner on the simulated
    clock, each into its own folder with its Budgets section, and the suite's report over them. A problem space
    without a table, a range test (not in a table of fixed-schedule runs) and several K for a suite are refused."""
    import pandas as pd

    text = f"""
name = "tables-suite"
strategies = ["random", "optuna-tpe"]
budgets = [2, 4]
seeds = 6
[executor]
kind = "simulated"
[options.optuna-tpe]
n_startup_trials = 2
[[problems]]
task = "nobn"
tables = {{ lr = "{ROOT / 'results' / 'tables' / 'nobn'}" }}
[problems.spaces.lr]
lr = {{ low = 1e-3, high = 1.0, log = true }}
[[problems]]
task = "caffe-cpu"
tables = {{ lr = "{ROOT / 'results' / 'tables' / 'caffe-cpu'}" }}
[problems.spaces.lr]
lr = {{ low = 1e-4, high = 0.3, log = true }}
"""
    suite = tmp_path / "suite.toml"
    suite.write_text(text)
    out = tmp_path / "on-tables"
    from lrsearch.cli import main

    assert main(["replay", str(suite), "--results", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["caffe-cpu-lr", "nobn-lr", "scores"]
    for problem in ("caffe-cpu-lr", "nobn-lr"):
        assert "## Budgets" in (out / problem / "REPORT.md").read_text()
        summary = pd.read_csv(out / problem / "tables" / "budget_summary.csv")
        assert set(summary["strategy"]) == {"random", "optuna-tpe"} and set(summary["budget"]) == {2, 4}
        assert set(summary["n_seeds"]) == {6}
        runs = pd.read_csv(out / problem / "tables" / "runs.csv")
        assert set(runs["budget"]) == {4}  # neither sizes its proposals to the budget: one run per seed, at 4
    report = (out / "REPORT.md").read_text()
    assert "## Scores" in report and "## nobn-lr" in report and "(nobn-lr/REPORT.md)" in report

    two_d = ("[problems.spaces.lr-wd]\nlr = { low = 1e-4, high = 0.3, log = true }\n"
             "weight_decay = { low = 1e-5, high = 1e-2, log = true }\n")
    range_test = text.replace('strategies = ["random", "optuna-tpe"]', 'strategies = ["random", "optuna-tpe", "lr-range-clr"]')
    for i, (changed, flags, says) in enumerate([
            (text + two_d, [], "problems[1].tables.lr-wd: a simulated suite reads every problem from its table"),
            (range_test, [], "lr-range-clr: a table holds fixed-schedule runs"),
            (text, ["--workers", "1", "2"], "an experiment (not a suite)")]):
        suite.write_text(changed)
        assert main(["replay", str(suite), "--results", str(tmp_path / f"refused{i}"), *flags]) == 2
        err = capsys.readouterr().err
        assert says in err and "Traceback" not in err, (i, err)


def test_a_conditional_space_through_the_runner_flags_the_flattening_strategy(tmp_path):
    code = tmp_path / "sched.py"
    code.write_text("def objective(params, report):\n"
                    "    bonus = {'constant': 0.0, 'cosine': params.get('final_lr_factor', 0.0)}[params['schedule']]\n"
                    "    report(1, -abs(params['lr'] - 0.1) + bonus)\n")
    space = {"lr": {"low": 1e-3, "high": 1.0, "log": True},
             "schedule": {"choices": {"constant": {}, "cosine": {"final_lr_factor": {"low": 1e-3, "high": 0.5, "log": True}}}}}
    from lrsearch import load_results, run_experiment

    out = run_experiment(Experiment(name="cond", task=f"{code}:objective", strategies=["optuna-tpe", "optuna-gp"],
                                    budgets=[5], seeds=[0], space=space, results=str(tmp_path / "out"),
                                    options={"optuna-tpe": {"n_startup_trials": 2}, "optuna-gp": {"n_startup_trials": 2}}))
    trials = load_results(out).trials
    for t in trials.itertuples():  # only the active parameters, whatever the strategy
        assert ("params_final_lr_factor" in trials and not math.isnan(t.params_final_lr_factor)) == (t.params_schedule == "cosine")
    from lrsearch.reporting.report import build_report

    report = build_report(out).read_text()
    assert "**flattened / ignored** optuna-gp: conditional space flattened" in report
    assert "optuna-tpe: conditional" not in report
    import optuna

    studies = optuna.get_all_study_summaries(f"sqlite:///{out / 'optuna.sqlite3'}")
    assert sorted(s.n_trials for s in studies) == [5, 5]  # the dashboard mirror holds every trial


def test_a_users_model_trains_on_the_device_asked_for():
    """`--device` reaches a user's model: ModelWorkload moves the model and each batch to the trial's device (the
    `meta` device here: it runs forward and backward without data, and fails the trial at the first reading of
    the loss, after the model has seen it). It used to train on the CPU whatever was asked."""
    import torch

    from lrsearch import ModelWorkload

    seen = []

    def model():
        net = torch.nn.Sequential(torch.nn.Linear(4, 3))
        net.register_forward_pre_hook(lambda module, args: seen.append((next(module.parameters()).device.type,
                                                                        args[0].device.type)))
        return net

    x, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
    workload = ModelWorkload(name="tiny", model=model, train_data=(x, y), val_data=(x, y), steps=4, batch_size=16)
    result = workload.trial({"lr": 0.1}, seed=0, device="meta")
    assert seen and set(seen) == {("meta", "meta")}, seen
    assert result.device == "meta" and result.status == "failed"
    seen.clear()
    on_cpu = workload.trial({"lr": 0.1}, seed=0, device="cpu")
    assert on_cpu.status == "ok" and set(seen) == {("cpu", "cpu")} and on_cpu.device.startswith("cpu")
