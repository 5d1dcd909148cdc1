"""The Ray executor on this CPU: a private Ray on 127.0.0.1 only, the smoke preset with two
workers against the local executor, a worker killed mid-trial, Ctrl-C and resume."""

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import pytest
from conftest import trial_count

from lrsearch.experiment.config import load_experiment

try:
    import ray
except ImportError:  # reported by the fixture below, test by test
    ray = None


@pytest.fixture(autouse=True)
def ray_installed():
    """`make install` installs Ray (the `ray` extra), so a missing Ray is a broken install, not a reason to
    skip: each test fails, saying so. To leave these tests out on purpose: `pytest -m "not ray"`."""
    if ray is None:
        pytest.fail("Ray is not installed: `make install` installs it (pip install -e '.[ray]'); "
                    "run `pytest -m \"not ray\"` to leave the Ray tests out on purpose", pytrace=False)


# xdist_group: under `make test`'s parallel workers, these tests run in two groups, each group's tests one after
# another on one worker (two private Rays at most, on 2 cores), the groups side by side: each test checks the
# sockets and processes of its own process tree only, so another group's Ray never shows in its checks.
# `ray-1` is the module's, `ray-2` marks its tests below (a test's own mark wins).
pytestmark = [pytest.mark.ray, pytest.mark.xdist_group("ray-1")]
RAY_2 = pytest.mark.xdist_group("ray-2")

REPO = Path(__file__).resolve().parents[1]
LOOPBACK = {"127.0.0.1", "::ffff:127.0.0.1", "::1"}
# The smoke task cut to 1,000 training images and one epoch of 10 steps, evaluated at steps 5 and 10 (so that
# a pruner has a report to act on): each trial a second or two, so that these tests spend their time on Ray.
SMALL = """
name = "ray-small"
task = "smoke"
strategies = {strategies}
budgets = [{budget}]
seeds = {seeds}
[task_overrides]
epochs = 1
train_subset = 1300
val_size = 300
test_subset = 300
eval_every = 5
[space]
lr = {{ low = 1e-3, high = 3.0, log = true }}
"""


def _family() -> list[psutil.Process]:
    """This process and everything it started (gcs_server, raylet, Ray's agents and workers)."""
    me = psutil.Process()
    return [me, *me.children(recursive=True)]


def _trials(results: Path) -> list[tuple]:
    with sqlite3.connect(results / "results.sqlite") as conn:
        return conn.execute(
            "SELECT r.strategy, r.budget, r.seed, t.trial_index, t.params, t.status, t.error FROM trials t "
            "JOIN runs r USING (run_id) ORDER BY 1, 2, 3, 4").fetchall()


@pytest.mark.usefixtures("jpeg_data")
def test_private_ray_listens_on_loopback_only_and_is_gone_after(monkeypatch):
    from conftest import JPEG

    from lrsearch.experiment.executors.ray_executor import RayExecutor
    from lrsearch.search.objective import TrainingObjective
    from lrsearch.training.tasks import get_task

    objective = TrainingObjective(get_task("smoke", epochs=1), seed=0, data_source=str(JPEG))
    with RayExecutor(workers=2) as executor:
        evaluation = executor.evaluate(objective, {"lr": 0.05}, None)
        assert evaluation.status == "ok" and evaluation.value > 0.15
        family = _family()
        names = {p.name() for p in family}
        assert {"gcs_server", "raylet"} <= names
        listeners = [(p.name(), c.laddr) for p in family for c in p.net_connections(kind="inet")
                     if c.status == psutil.CONN_LISTEN]
    assert len(listeners) >= 4  # the GCS, the raylet's servers, the workers': something to check
    assert all(addr.ip in LOOPBACK for _, addr in listeners), listeners
    time.sleep(1)
    assert not [p for p in family[1:] if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


@RAY_2
@pytest.mark.usefixtures("jpeg_data")
def test_smoke_preset_on_two_ray_workers_gives_the_local_runs_and_trials(tmp_path):
    """Same runs, same trials, same params (seeded; the smoke budget is within every model-based
    strategy's random start-up); values may differ in the last digits (one thread per trial vs two).
    The preset's strategies of each way a strategy meets the executor: several trials in flight (random),
    one at a time through a library's own loop (hyperopt-tpe), a pruner's reports relayed to the driver
    (optuna-tpe-asha), a range test and its run (lr-range-clr)."""
    from conftest import JPEG

    env = dict(os.environ, LRSEARCH_DATA=str(JPEG))
    preset = load_experiment(REPO / "experiments" / "benchmark-smoke.toml")  # its budget, smaller trials
    strategies = ["random", "hyperopt-tpe", "optuna-tpe-asha", "lr-range-clr"]
    assert set(strategies) <= set(preset.strategies)
    config = tmp_path / "smoke.toml"
    config.write_text(SMALL.format(budget=preset.budgets[0], seeds=[0], strategies=json.dumps(strategies)))
    command = [sys.executable, "-m", "lrsearch", "run", str(config)]
    for name, extra in (("local", []), ("ray", ["--executor", "ray", "--workers", "2"])):
        done = subprocess.run([*command, "--results", str(tmp_path / name), *extra], env=env, cwd=REPO,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
    assert "2 trials at once" in done.stdout
    local, ray_ = _trials(tmp_path / "local"), _trials(tmp_path / "ray")
    assert len(local) == 11  # 3 strategies x 3 trials, lr-range-clr: a range test and one training run
    assert [r[:5] for r in ray_] == [r[:5] for r in local]
    assert {r[5] for r in ray_} <= {"ok", "pruned", "diverged"}
    with sqlite3.connect(tmp_path / "ray" / "results.sqlite") as conn:
        assert {s for (s,) in conn.execute("SELECT status FROM runs")} == {"complete"}


@RAY_2
@pytest.mark.usefixtures("jpeg_data")
def test_a_killed_worker_fails_its_trial_and_the_experiment_goes_on(tmp_path):
    """Two kills: one trial of `random` (several in flight, `submit`), then, once both random runs are
    complete, one of `optuna-tpe-asha` (one at a time, its pruning reports relayed, `evaluate`)."""
    from conftest import JPEG

    from lrsearch.experiment.executors.ray_executor import RayExecutor
    from lrsearch.experiment.runner import run_experiment

    config = tmp_path / "exp.toml"
    config.write_text(SMALL.format(budget=4, seeds=[0, 1], strategies='["random", "optuna-tpe-asha"]'))
    results = tmp_path / "out"
    killed: list[int] = []

    def ready_for_kill() -> bool:
        with sqlite3.connect(results / "results.sqlite", timeout=1) as conn:
            random_done, asha_trials = conn.execute(
                "SELECT (SELECT COUNT(*) FROM runs WHERE strategy='random' AND status='complete'), "
                "(SELECT COUNT(*) FROM trials JOIN runs USING (run_id) WHERE strategy='optuna-tpe-asha')").fetchone()
        return (random_done == 0 and trial_count(results) >= 2) if not killed else (random_done == 2 and asha_trials >= 1)

    def kill_two_trials():
        deadline = time.time() + 240
        while len(killed) < 2 and time.time() < deadline:
            try:
                if ready_for_kill():
                    for p in _family():
                        if p.cmdline()[:1] == ["ray::lrsearch-trial"]:
                            p.kill()  # SIGKILL, as the OOM killer would
                            killed.append(p.pid)
                            break
            except (psutil.Error, sqlite3.Error):
                pass
            time.sleep(0.05)

    watcher = threading.Thread(target=kill_two_trials)
    watcher.start()
    run_experiment(load_experiment(config), results, executor=RayExecutor(workers=2), data_source=str(JPEG),
                   progress=False)
    watcher.join()
    assert len(killed) == 2, "a trial's worker was not seen running when it could be killed"
    trials = _trials(results)
    assert len(trials) == 16  # every trial of every run: the killed ones recorded, none twice
    failed = [t for t in trials if t[5] == "failed"]
    assert sorted(t[0] for t in failed) == ["optuna-tpe-asha", "random"], failed
    assert all("WorkerCrashedError" in t[6] for t in failed), failed
    with sqlite3.connect(results / "results.sqlite") as conn:
        assert {s for (s,) in conn.execute("SELECT status FROM runs")} == {"complete"}


@pytest.mark.usefixtures("jpeg_data")
def test_ctrl_c_stops_ray_cleanly_and_the_same_command_resumes(tmp_path):
    from conftest import JPEG

    config = tmp_path / "exp.toml"
    config.write_text(SMALL.format(budget=3, seeds=[0, 1], strategies='["random", "optuna-tpe"]'))
    env = dict(os.environ, LRSEARCH_DATA=str(JPEG), PYTHONUNBUFFERED="1")
    out = tmp_path / "out"
    command = [sys.executable, "-m", "lrsearch", "run", str(config), "--results", str(out), "--executor", "ray",
               "--workers", "2"]
    # its own process group, which Ctrl-C in a terminal signals whole (Ray's processes included)
    proc = subprocess.Popen(command, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.time() + 180
    while trial_count(out) < 5 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    family = psutil.Process(proc.pid).children(recursive=True)
    assert any(p.name() == "raylet" for p in family)
    os.killpg(proc.pid, signal.SIGINT)
    stderr = proc.communicate(timeout=60)[1]
    assert proc.returncode == 130 and "resumes" in stderr, stderr[-2000:]
    time.sleep(1)
    assert not [p for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]  # Ray is gone
    partial = _trials(out)
    assert 5 <= len(partial) < 12
    assert subprocess.run(command, env=env, cwd=REPO, capture_output=True, timeout=600).returncode == 0
    resumed = _trials(out)
    keys = [t[:4] for t in resumed]
    assert len(keys) == len(set(keys)) == 12  # 2 strategies x 2 seeds x 3 trials, none twice
    assert set(partial) <= set(resumed)  # nothing finished before Ctrl-C was lost or changed
    assert not [t for t in resumed if t[5] == "failed"]  # an interrupted trial is not recorded as failed


@RAY_2
@pytest.mark.usefixtures("jpeg_data")
def test_an_existing_cluster_by_address_is_used_and_left_running(tmp_path):
    """`ray start --head` (here on loopback, in the foreground so that the test can stop exactly it),
    then --address: the trials run there, and lrsearch leaves the cluster as it found it."""
    import ray
    from conftest import JPEG

    from lrsearch.experiment.executors.ray_executor import RayExecutor
    from lrsearch.experiment.runner import run_experiment

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ValueError, match=f"--address 127.0.0.1:{port}: no Ray cluster answers there"):
        RayExecutor(address=f"127.0.0.1:{port}")
    ray_cli = str(Path(sys.executable).with_name("ray"))
    scratch = tempfile.mkdtemp(prefix="ray-")  # short: Ray's socket paths under it must fit in 107 characters
    head = subprocess.Popen([ray_cli, "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}",
                             "--include-dashboard=false", "--num-cpus=2", f"--temp-dir={scratch}"],
                            env=dict(os.environ, RAY_USAGE_STATS_ENABLED="0"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        config = tmp_path / "exp.toml"
        config.write_text(SMALL.format(budget=4, seeds=[0, 1], strategies='["random"]'))
        deadline = time.time() + 60
        while time.time() < deadline and not _answers("127.0.0.1", port):
            time.sleep(0.2)
        executor = RayExecutor(address=f"127.0.0.1:{port}")
        assert executor.slots == 2 and "127.0.0.1:" in executor.describe()
        run_experiment(load_experiment(config), tmp_path / "out", executor=executor, data_source=str(JPEG),
                       progress=False)
        assert len(_trials(tmp_path / "out")) == 8 and not ray.is_initialized()
        assert head.poll() is None  # the cluster still runs
        ray.init(address=f"127.0.0.1:{port}")
        assert ray.cluster_resources()["CPU"] == 2
        ray.shutdown()
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        head.wait(timeout=60)
        shutil.rmtree(scratch, ignore_errors=True)


def _answers(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.mark.usefixtures("jpeg_data")
def test_an_error_in_a_run_stops_the_private_ray_too(tmp_path):
    """A run that raises (here: a range test over a space without `lr`) ends the experiment with its
    error, and the private Ray is shut down and its scratch folder removed."""
    from conftest import JPEG

    from lrsearch.experiment.executors.ray_executor import RayExecutor
    from lrsearch.experiment.runner import run_experiment

    config = tmp_path / "exp.toml"
    config.write_text(SMALL.format(budget=4, seeds=[0, 1], strategies='["random", "lr-range-clr"]').replace(
        "lr = { low = 1e-3, high = 3.0, log = true }", "momentum = { low = 0.8, high = 0.95 }"))
    executor = RayExecutor(workers=2)
    family, scratch = _family()[1:], Path(executor._scratch)
    assert any(p.name() == "raylet" for p in family) and scratch.is_dir()
    with pytest.raises(ValueError, match="lr-range-clr: the search space needs a numeric `lr`"):
        run_experiment(load_experiment(config), tmp_path / "out", executor=executor, data_source=str(JPEG),
                       progress=False)
    time.sleep(1)
    assert not [p for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not scratch.exists()
