"""A real NNI experiment: manager (Node.js) + local training service, 3 trials of the smoke
task, its servers on 127.0.0.1 only, results in the store, every process stopped after."""

import json
import sqlite3

import psutil
import pytest

# its own xdist group: it counts every NNI process on the machine, and no other test starts one
pytestmark = pytest.mark.xdist_group("nni")

REPO_EXPERIMENT = """
name = "nni"
task = "smoke"
strategies = ["nni-tpe"]
budgets = [3]
seeds = [0]
[task_overrides]  # the smoke task cut to 1,000 training images: a second or two per trial
epochs = 1
train_subset = 1300
val_size = 300
test_subset = 300
eval_every = 5
"""


def _node_processes():
    return {p.pid for p in psutil.process_iter(["name", "cmdline"])
            if p.info["cmdline"] and any("nni_node" in part for part in p.info["cmdline"])}


@pytest.mark.usefixtures("jpeg_data")
def test_nni_experiment_runs_trials_on_loopback_only(tmp_path, monkeypatch):
    from conftest import JPEG

    from lrsearch.experiment.claims import DefinitionChanged
    from lrsearch.experiment.config import load_experiment
    from lrsearch.experiment.nni_experiment import run_nni_experiment

    monkeypatch.setenv("LRSEARCH_DATA", str(JPEG))
    monkeypatch.setenv("HOME", str(tmp_path))  # NNI keeps its experiment registry under ~/nni-experiments
    config = tmp_path / "nni.toml"
    config.write_text(REPO_EXPERIMENT)
    before = _node_processes()
    summary = run_nni_experiment(load_experiment(config), "tpe", n_trials=3, seed=0, port=18080,
                                 results_dir=tmp_path / "out", timeout_s=600)
    assert summary["nni_status"] == "DONE" and summary["trials"] == 3, summary
    assert summary["listening"], "saw no listening socket of the manager"
    assert all(ip == "127.0.0.1" for ip, _ in summary["listening"]), summary["listening"]
    assert 18080 in {port for _, port in summary["listening"]}
    with sqlite3.connect(tmp_path / "out" / "results.sqlite") as conn:
        rows = conn.execute("SELECT t.trial_index, t.status, t.value, t.lr, r.strategy, r.status FROM trials t "
                            "JOIN runs r USING (run_id) ORDER BY t.trial_index").fetchall()
        run = conn.execute("SELECT definition, worker FROM runs").fetchone()
    assert [r[0] for r in rows] == [0, 1, 2]
    assert all(r[4] == "nni-experiment-tpe" and r[5] == "complete" and 1e-4 <= r[3] <= 1.0 for r in rows)
    assert _node_processes() - before == set()  # the manager and its children are gone
    # the run went through the runner's claims: its definition is stored (a changed one stops the next call)
    # and it was claimed by this process
    assert run[0] is not None and json.loads(run[0])["space"] and run[1] is not None
    again = run_nni_experiment(load_experiment(config), "tpe", n_trials=3, seed=0, port=18080,
                               results_dir=tmp_path / "out", timeout_s=600)
    assert again == {"strategy": "nni-experiment-tpe", "skipped": "already complete"}
    config.write_text(REPO_EXPERIMENT.replace("epochs = 1", "epochs = 2"))
    with pytest.raises(DefinitionChanged, match="epochs: 1 -> 2"):
        run_nni_experiment(load_experiment(config), "tpe", n_trials=3, seed=0, port=18080,
                           results_dir=tmp_path / "out", timeout_s=600)
