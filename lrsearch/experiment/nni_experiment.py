"""A real NNI experiment: NNI's manager (Node.js, local training service) runs the trials,
with its web UI up during the run; every trial lands in the same store as other runs.

NNI's REST server listens on every interface and offers no option to change that, so the
manager is started with NODE_OPTIONS=--require loopback.js, which keeps its servers on
127.0.0.1. The manager and every process it started are stopped when the run ends or fails.
Recorded per trial as `overhead_s`: the time from the previous trial's end (or the run's
start) to this trial's process start, i.e. what NNI's scheduling and process spawn cost.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import signal
import sys
import time
from dataclasses import asdict
from pathlib import Path

import psutil

from lrsearch.experiment.claims import RunClaims, run_definition
from lrsearch.experiment.config import Experiment
from lrsearch.experiment.provenance import environment
from lrsearch.experiment.runner import RunSpec
from lrsearch.experiment.store import Store
from lrsearch.search.strategies.nni_ import nni_space
from lrsearch.training.errors import InputError

LOOPBACK_JS = Path(__file__).with_name("loopback.js")
# NNI's built-in tuner names for the strategies we also run in-process
TUNERS = {"tpe": ("TPE", True), "evolution": ("Evolution", False), "anneal": ("Anneal", False), "random": ("Random", True)}


def listening_addresses(pid: int) -> set[tuple[str, int]]:
    """(ip, port) of every TCP socket in LISTEN state of a process and its children."""
    found = set()
    try:
        root = psutil.Process(pid)
        for proc in [root, *root.children(recursive=True)]:
            for conn in proc.net_connections(kind="inet"):
                if conn.status == psutil.CONN_LISTEN:
                    found.add((conn.laddr.ip, conn.laddr.port))
    except psutil.Error:
        pass
    return found


def _kill_tree(pid: int) -> None:
    try:
        root = psutil.Process(pid)
        procs = [*root.children(recursive=True), root]
    except psutil.NoSuchProcess:
        return
    for proc in procs:
        try:
            proc.send_signal(signal.SIGKILL)
        except psutil.Error:
            pass
    psutil.wait_procs(procs, timeout=10)


def run_nni_experiment(experiment: Experiment, tuner: str = "tpe", n_trials: int | None = None, seed: int | None = None,
                       port: int = 8080, results_dir: str | Path | None = None, timeout_s: float = 3600) -> dict:
    """Run `n_trials` (default: the config's first budget) through NNI's manager; return a summary
    with the run id, NNI's final status and the listening addresses seen during the run."""
    if tuner not in TUNERS:
        raise InputError(f"tuner {tuner!r}: expected one of {', '.join(TUNERS)}")
    n_trials = n_trials or experiment.budgets[0]
    seed = experiment.seeds[0] if seed is None else seed
    out = experiment.results_dir(results_dir).resolve()
    workload = experiment.workload()
    task = experiment.task_spec()
    strategy = f"nni-experiment-{tuner}"
    spec = RunSpec(strategy, n_trials, seed)
    store = Store(out / "results.sqlite", create=True)
    # the runner's change check and claim (claims.py): a run stored under another definition stops here, a run
    # another live process holds is left to it; the claim's heartbeat goes on while NNI's manager trains
    claims = RunClaims(store, experiment.name, environment())
    try:
        definition = run_definition(experiment, spec, workload)
        claims.check({(strategy, n_trials, seed): definition}, workload.definition_defaults(),
                     workload.definition_ignored())
        state, run_id = claims.claim(task=task.name, strategy=strategy, budget=n_trials, seed=seed,
                                     definition=definition)
        if state != "claimed":  # (the finally below lets go of the store)
            return {"strategy": strategy, "skipped": "already complete" if state == "complete"
                    else "another live process is running it"}
        experiment.write_json(out, workload)
        # A half-done NNI run cannot be resumed inside NNI: redo it cleanly.
        store.drop_trials_from(run_id, 0)
        summary = _run_nni(experiment, tuner, n_trials, seed, port, out, task, run_id, timeout_s)
        n_done = len(store.stored_trials(run_id))
        if summary["nni_status"] == "DONE" and n_done == n_trials:
            claims.complete(run_id)
    finally:
        claims.close()
        store.close()
    return {"strategy": strategy, "run_id": run_id, **summary, "trials": n_done, "results": str(out)}


def _run_nni(experiment: Experiment, tuner: str, n_trials: int, seed: int, port: int, out: Path, task, run_id: int,
             timeout_s: float) -> dict:
    """NNI's manager over the claimed run: its trials (nni_trial.py) write into the store; returns NNI's final
    status and the listening addresses seen while it ran."""
    from nni.experiment import Experiment as NNIExperiment

    name, seeded = TUNERS[tuner]
    exp = NNIExperiment("local")
    cfg = exp.config
    cfg.experiment_name = f"lrsearch-{experiment.name}-{tuner}"
    task_file = out / "nni" / f"task-{run_id}.json"
    task_file.parent.mkdir(parents=True, exist_ok=True)
    task_file.write_text(json.dumps(asdict(task)))
    cfg.trial_command = shlex.join([sys.executable, "-m", "lrsearch.experiment.nni_trial", "--results", str(out), "--run-id",
                                    str(run_id), "--seed", str(seed), "--task-file", str(task_file)])
    cfg.trial_code_directory = str(Path.cwd())
    cfg.experiment_working_directory = str(out / "nni")
    cfg.search_space = nni_space(experiment.search_space())
    cfg.tuner.name = name
    cfg.tuner.class_args = {"optimize_mode": "maximize", **({"seed": seed} if seeded else {})}
    cfg.max_trial_number = n_trials
    cfg.trial_concurrency = 1
    cfg.training_service.platform = "local"

    old_node_options = os.environ.get("NODE_OPTIONS")
    os.environ["NODE_OPTIONS"] = f"{old_node_options or ''} --require {LOOPBACK_JS}".strip()
    logging.getLogger("nni").setLevel(logging.WARNING)
    seen: set[tuple[str, int]] = set()
    status = "UNKNOWN"
    try:
        exp.start(port)
        print(f"NNI manager up; web UI at http://127.0.0.1:{port} during the run", flush=True)
        pid = exp._proc.pid
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            seen |= listening_addresses(pid)
            status = exp.get_status()
            if status in ("DONE", "STOPPED", "ERROR"):
                break
            time.sleep(1)
    finally:
        pid = exp._proc.pid if exp._proc is not None else None
        try:
            exp.stop()
        finally:
            if pid is not None:
                _kill_tree(pid)
            if old_node_options is None:
                os.environ.pop("NODE_OPTIONS", None)
            else:
                os.environ["NODE_OPTIONS"] = old_node_options
    return {"nni_status": status, "listening": sorted(seen)}
