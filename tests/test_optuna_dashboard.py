"""The Optuna mirror as optuna-dashboard (the version pinned in the dev extra) serves it: its study pages read
the objective's name from the API's `objective_names` ("Objective 0" where it is missing) and list the study's
user attributes. Served in-process through the dashboard's own WSGI app, so no port is opened."""

import io
import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from lrsearch.experiment.dashboard import OptunaMirror, study_name
from lrsearch.experiment.store import Store
from lrsearch.search.strategies import parse_space

try:
    import optuna_dashboard
except ModuleNotFoundError:  # a broken install, not a reason to skip
    optuna_dashboard = None

REPO = Path(__file__).resolve().parents[1]
RECORDED = REPO / "results" / "parallel-check-cpu" / "results.sqlite"  # real runs: random and optuna-tpe, 2 seeds
SPACE = {"lr": {"low": 1e-3, "high": 3.0, "log": True}}


def _get(app, path: str) -> dict:
    """One GET through the WSGI app, its JSON body."""
    status = []
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": "after=0", "SERVER_NAME": "127.0.0.1",
               "SERVER_PORT": "0", "wsgi.input": io.BytesIO(), "wsgi.errors": io.StringIO(), "wsgi.url_scheme": "http"}
    body = b"".join(app(environ, lambda s, headers, exc_info=None: status.append(s)))
    assert status and status[0].startswith("200"), (path, status, body[:300])
    return json.loads(body)


def test_the_dashboard_names_the_objective_and_shows_the_problem(tmp_path):
    if optuna_dashboard is None:
        pytest.fail("optuna-dashboard is not installed: `make install` installs it (the dev extra)", pytrace=False)
    shutil.copy(RECORDED, tmp_path / "results.sqlite")
    with sqlite3.connect(tmp_path / "results.sqlite") as conn:
        runs = conn.execute("SELECT run_id, experiment, strategy, budget, seed FROM runs ORDER BY run_id").fetchall()
    attrs = {"problem": "parallel-check-cpu", "workload": "cpu", "metric": "val_acc", "direction": "maximize",
             "space": json.dumps(SPACE, sort_keys=True)}
    mirror = OptunaMirror(tmp_path, parse_space(SPACE), metric="val_acc", attrs=attrs)
    store = Store(tmp_path / "results.sqlite")
    for run_id, experiment, strategy, budget, seed in runs:
        mirror.sync(store, run_id, study_name(experiment, strategy, budget, seed))
    store.close()

    app = optuna_dashboard.wsgi(mirror.url)
    studies = {s["study_name"]: s for s in _get(app, "/api/studies")["study_summaries"]}
    assert len(studies) == len(runs) == 4
    for (run_id, experiment, strategy, budget, seed) in runs:
        summary = studies[study_name(experiment, strategy, budget, seed)]
        assert {a["key"]: a["value"] for a in summary["user_attrs"]} == attrs
        page = _get(app, f"/api/studies/{summary['study_id']}")
        assert page["objective_names"] == ["val_acc"]  # the study page's label, in place of "Objective 0"
        assert page["directions"] == ["maximize"]
        with sqlite3.connect(tmp_path / "results.sqlite") as conn:
            values = [v for (v,) in conn.execute(
                "SELECT value FROM trials WHERE run_id = ? ORDER BY trial_index", (run_id,))]
        assert [t["values"][0] for t in page["trials"]] == pytest.approx(values)
        assert all(t["intermediate_values"] for t in page["trials"])  # the curves a pruner saw
