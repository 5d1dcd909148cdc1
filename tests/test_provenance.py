"""Provenance: a commit is -dirty when code or config differs from it, never for the results a run writes."""

import subprocess

import pytest

from lrsearch.experiment.provenance import as_markdown, changed_files, git_commit


def _git(repo, *args):
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path, monkeypatch):
    monkeypatch.delenv("LRSEARCH_GIT_COMMIT", raising=False)
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "config", "user.email", "t@example.org")
    _git(tmp_path, "config", "user.name", "t")
    for path in ("lrsearch/code.py", "experiments/a.toml", "results/bench/results.sqlite", "runs/x/results.sqlite"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("one\n")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-qm", "first")
    return tmp_path


def test_results_written_into_a_committed_folder_are_not_dirty(repo):
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    (repo / "results/bench/results.sqlite").write_text("two\n")
    (repo / "runs/x/results.sqlite").write_text("two\n")
    (repo / "untracked.py").write_text("new\n")  # untracked files never count
    assert changed_files(repo) == []
    assert git_commit(repo) == head


def test_code_or_config_changes_are_dirty_and_listed(repo):
    (repo / "results/bench/results.sqlite").write_text("two\n")
    (repo / "lrsearch/code.py").write_text("two\n")
    (repo / "experiments/a.toml").write_text("two\n")
    _git(repo, "add", "experiments/a.toml")  # staged counts too
    assert changed_files(repo) == ["experiments/a.toml", "lrsearch/code.py"]
    assert git_commit(repo).endswith("-dirty")
    env = {"command": "c", "date": "d", "device": "cpu", "git_commit": git_commit(repo),
           "git_changed": changed_files(repo), "versions": {}}
    assert "uncommitted changes to `experiments/a.toml`, `lrsearch/code.py`" in as_markdown(env)


def test_outside_git_the_commit_is_unknown(tmp_path, monkeypatch):
    monkeypatch.delenv("LRSEARCH_GIT_COMMIT", raising=False)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    assert git_commit(tmp_path) == "unknown" and changed_files(tmp_path) is None


def test_every_pinned_library_is_in_the_recorded_versions():
    """Read independently of the code: every `name==version` of pyproject.toml (extras included) and every
    `--no-deps` install of the Makefile is recorded, at the version installed."""
    import importlib.metadata
    import re
    from pathlib import Path

    import tomllib

    from lrsearch.experiment.provenance import versions

    root = Path(__file__).resolve().parents[1]
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    requirements = [*project["dependencies"], *(r for extra in project["optional-dependencies"].values() for r in extra)]
    pinned = {r.split("==")[0].strip() for r in requirements if "==" in r}
    no_deps = re.findall(r"pip install -q --no-deps (.+)", (root / "Makefile").read_text())
    pinned |= {spec.split("==")[0] for line in no_deps for spec in line.split()}
    assert {"smac", "hebo", "dehb", "nevergrad", "scikit-optimize", "syne-tune", "optunity", "schedulefree"} <= pinned
    recorded = versions()
    for name in sorted(pinned):
        assert recorded.get(name) == importlib.metadata.version(name), name
