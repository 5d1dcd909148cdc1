"""`lrsearch run --target` wins over the experiment file's `target` or `target_acc`, and takes any real number
(a loss target above 1 included)."""

import pytest
from test_runner import REPO

from lrsearch.cli import main


@pytest.fixture
def seen(monkeypatch):
    """The experiment `lrsearch run` hands to the runner, caught before any training."""
    import lrsearch.experiment.runner as runner

    caught = []

    def run_experiment(experiment, *args, **kwargs):
        caught.append(experiment)
        raise KeyboardInterrupt  # stop here: the CLI's own Ctrl-C path (exit 130)

    monkeypatch.setattr(runner, "run_experiment", run_experiment)
    return caught


@pytest.mark.parametrize("target", ["0.1", "2.5", "-3"])
def test_target_overrides_the_files_target(seen, target, tmp_path):
    config = REPO / "examples" / "digits-objective.toml"  # sets `target = 0.15`, minimised
    assert main(["run", str(config), "--results", str(tmp_path / "out")]) == 130
    assert seen[-1].target_value() == 0.15
    assert main(["run", str(config), "--results", str(tmp_path / "out"), "--target", target]) == 130
    assert seen[-1].target_value() == float(target)
    assert seen[-1].workload().target == float(target)


def test_target_overrides_a_built_in_tasks_target_acc(seen, tmp_path, monkeypatch):
    from conftest import JPEG

    monkeypatch.setenv("LRSEARCH_DATA", str(JPEG))
    config = REPO / "experiments" / "benchmark-smoke.toml"
    assert main(["run", str(config), "--results", str(tmp_path / "out"), "--target", "0.3"]) == 130
    assert seen[-1].target_value() == 0.3 and seen[-1].task_spec().target_acc == 0.3


@pytest.mark.parametrize("bad", ["high", "nan", "inf"])
def test_a_target_that_is_not_a_number_is_refused(bad, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["run", "examples/digits-objective.toml", "--target", bad])
    assert exit_.value.code == 2 and "--target" in capsys.readouterr().err


# ------------------------------------------------------------ a user's error against a bug


def test_a_users_error_is_one_line_and_exit_2(tmp_path, capsys):
    config = REPO / "examples" / "digits-objective.toml"
    assert main(["run", str(config), "--results", str(tmp_path / "out"), "--only", "no-such-strategy"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--only no-such-strategy" in err


BUG = """
import sys
import lrsearch.experiment.runner as runner

def run_experiment(*args, **kwargs):
    raise ValueError("an internal invariant broke")  # a bug inside a run, not a user's mistake

runner.run_experiment = run_experiment
from lrsearch.cli import main
sys.exit(main(["run", sys.argv[1], "--results", sys.argv[2]]))
"""


def test_a_bug_inside_a_run_prints_its_traceback_and_exits_1(tmp_path):
    import subprocess
    import sys

    config = REPO / "examples" / "digits-objective.toml"
    done = subprocess.run([sys.executable, "-c", BUG, str(config), str(tmp_path / "out")], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 1
    assert "Traceback (most recent call last)" in done.stderr and "an internal invariant broke" in done.stderr
