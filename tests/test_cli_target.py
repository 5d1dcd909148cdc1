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
