"""The Ray executor on this CPU: a private Ray on 127.0.0.1 only, the smoke preset with two
workers against the local executor, a worker killed mid-trial, Ctrl-C and resume.

The tests of a private Ray's own start and stop start their own; the others share one cluster on 127.0.0.1
(`shared_ray`), started once for the whole test run and reached by its address, as a user's cluster is."""

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
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from conftest import trial_count

from lrsearch.experiment.config import load_experiment

try:
    import ray
except ImportError:  # reported by the fixture below, test by test
    ray = None


def _require_ray() -> None:
    """`make install` installs Ray (the `ray` extra), so a missing Ray is a broken install, not a reason to
    skip: each test fails, saying so. To leave these tests out on purpose: `pytest -m "not ray"`."""
    if ray is None:
        pytest.fail("Ray is not installed: `make install` installs it (pip install -e '.[ray]'); "
                    "run `pytest -m \"not ray\"` to leave the Ray tests out on purpose", pytrace=False)


@pytest.fixture(autouse=True)
def ray_installed():
    _require_ray()


# xdist_group: under `make test`'s parallel workers, these tests run in two groups, each group's tests one after
# another on one worker, the groups side by side (on 2 cores: a private Ray and the shared cluster at most).
# `ray-own` is the module's: each test starts and stops a Ray of its own and checks the sockets and processes of
# its own process tree only, so the other group's Ray never shows in its checks. `ray-shared` marks the tests
# below that use the one shared cluster (`shared_ray`), so that it is started on one worker only (a test's own
# mark wins).
pytestmark = [pytest.mark.ray, pytest.mark.xdist_group("ray-own")]
SHARED = pytest.mark.xdist_group("ray-shared")

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


# The shared cluster's head: a process of its own that starts a Ray node as the executor starts its private one
# (`ray start --head --node-ip-address=127.0.0.1` would not do: Ray turns that address into the machine's own and
# its servers listen on every interface), prints the address and keeps the node until its stdin closes. The
# tests reach it as [::ffff:127.0.0.1]:PORT, as the executor's docstring says a loopback-only cluster is reached.
SHARED_HEAD = "lrsearch-tests-shared-ray"  # in the head's command line: how `_family` tells its processes apart
HEAD = """
import sys
import ray
context = ray.init(address="local", _node_ip_address="127.0.0.1", include_dashboard=False, num_cpus=2,
                   _temp_dir=sys.argv[2], log_to_driver=False, configure_logging=False)
print("address", context.address_info["gcs_address"], flush=True)
sys.stdin.read()
ray.shutdown()
"""


@pytest.fixture(scope="session")
def shared_ray() -> Iterator[str]:
    """One Ray cluster on 127.0.0.1 for the whole test run (on one xdist worker: the `ray-shared` group), 2 CPUs:
    its address, for the tests to connect to as a user's cluster. Stopped at the end of the run,
    or when this process dies (the head's stdin closes). Its workers inherit this process's environment."""
    _require_ray()
    scratch = tempfile.mkdtemp(prefix="ray-")  # short: Ray's socket paths under it must fit in 107 characters
    head = subprocess.Popen([sys.executable, "-c", HEAD, SHARED_HEAD, scratch], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env=dict(os.environ, RAY_USAGE_STATS_ENABLED="0"))
    try:
        said = next((line.split()[1] for line in head.stdout if line.startswith("address ")), "")
        assert said.startswith("127.0.0.1:"), f"the shared Ray's head did not start (exit {head.poll()}): {said!r}"
        yield f"[::ffff:127.0.0.1]:{said.rpartition(':')[2]}"
    finally:
        head.stdin.close()
        head.wait(timeout=60)
        shutil.rmtree(scratch, ignore_errors=True)


def _family(shared: bool = False) -> list[psutil.Process]:
    """This process and everything it started (gcs_server, raylet, Ray's agents and workers); the shared
    cluster's processes (`shared_ray`'s head and its tree) only with `shared`: they outlive every test, and in
    a plain one-process pytest run they are this process's children too."""
    me = psutil.Process()
    family = me.children(recursive=True)
    if not shared:
        theirs = set()
        for child in me.children():
            try:
                if SHARED_HEAD in child.cmdline():
                    theirs |= {child, *child.children(recursive=True)}
            except psutil.Error:
                pass
        family = [p for p in family if p not in theirs]
    return [me, *family]


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


@SHARED
@pytest.mark.usefixtures("jpeg_data")
def test_smoke_preset_on_two_ray_workers_gives_the_local_runs_and_trials(tmp_path, shared_ray):
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
    for name, extra in (("local", []), ("ray", ["--executor", "ray", "--address", shared_ray, "--workers", "2"])):
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


@SHARED
@pytest.mark.usefixtures("jpeg_data")
def test_a_killed_worker_fails_its_trial_and_the_experiment_goes_on(tmp_path, shared_ray):
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
                    for p in _family(shared=True):
                        if p.cmdline()[:1] == ["ray::lrsearch-trial"]:
                            p.kill()  # SIGKILL, as the OOM killer would
                            killed.append(p.pid)
                            break
            except (psutil.Error, sqlite3.Error):
                pass
            time.sleep(0.05)

    watcher = threading.Thread(target=kill_two_trials)
    watcher.start()
    run_experiment(load_experiment(config), results, executor=RayExecutor(address=shared_ray, workers=2),
                   data_source=str(JPEG), progress=False)
    watcher.join()
    assert len(killed) == 2, "a trial's worker was not seen running when it could be killed"
    trials = _trials(results)
    assert len(trials) == 16  # every trial of every run: the killed ones recorded, none twice
    failed = [t for t in trials if t[5] == "failed"]
    assert sorted(t[0] for t in failed) == ["optuna-tpe-asha", "random"], failed
    assert all("WorkerCrashedError" in t[6] for t in failed), failed
    with sqlite3.connect(results / "results.sqlite") as conn:
        assert {s for (s,) in conn.execute("SELECT status FROM runs")} == {"complete"}


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.usefixtures("jpeg_data")
def test_ctrl_c_stops_ray_cleanly_and_the_same_command_resumes(tmp_path):
    from conftest import JPEG

    config = tmp_path / "exp.toml"
    config.write_text(SMALL.format(budget=3, seeds=[0, 1], strategies='["random", "optuna-tpe"]'))
    env = dict(os.environ, LRSEARCH_DATA=str(JPEG), PYTHONUNBUFFERED="1")
    out = tmp_path / "out"
    command = [sys.executable, "-m", "lrsearch", "run", str(config), "--results", str(out), "--executor", "ray",
               "--workers", "2"]
    # its own process group, which Ctrl-C in a terminal signals whole (Ray's processes included); SIGINT at its
    # default, as in a terminal: pytest started as a background job of a script (`make test &`) hands its
    # children SIGINT ignored, and Python then never raises KeyboardInterrupt
    proc = subprocess.Popen(command, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=_default_sigint)
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


@SHARED
@pytest.mark.usefixtures("jpeg_data")
def test_an_existing_cluster_by_address_is_used_and_left_running(tmp_path, shared_ray):
    """A cluster that lrsearch did not start (the shared one, on loopback), then --address: the trials run there,
    every server of the cluster listens on loopback only, and lrsearch leaves the cluster as it found it."""
    from conftest import JPEG

    from lrsearch.experiment.executors.ray_executor import RayExecutor
    from lrsearch.experiment.runner import run_experiment

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ValueError, match=f"--address 127.0.0.1:{port}: no Ray cluster answers there"):
        RayExecutor(address=f"127.0.0.1:{port}")
    config = tmp_path / "exp.toml"
    config.write_text(SMALL.format(budget=4, seeds=[0, 1], strategies='["random"]'))
    executor = RayExecutor(address=shared_ray)
    assert executor.slots == 2 and f"Ray ({shared_ray})" in executor.describe()
    run_experiment(load_experiment(config), tmp_path / "out", executor=executor, data_source=str(JPEG),
                   progress=False)
    assert len(_trials(tmp_path / "out")) == 8 and not ray.is_initialized()
    cluster = [p for p in _family(shared=True) if p not in _family()]
    assert {"gcs_server", "raylet"} <= {p.name() for p in cluster}  # the cluster still runs
    listeners = [(p.name(), c.laddr) for p in cluster for c in p.net_connections(kind="inet")
                 if c.status == psutil.CONN_LISTEN]
    assert listeners and all(addr.ip in LOOPBACK for _, addr in listeners), listeners
    ray.init(address=shared_ray)
    assert ray.cluster_resources()["CPU"] == 2
    ray.shutdown()


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
