import os
import sqlite3
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
JPEG = SHARED / "cifar10-jpeg.tar.gz"
MINI = SHARED / "cifar-10-mini-python.tar.gz"


# Under pytest-xdist (`make test` runs one worker per core) each worker, and each process a test starts, uses
# one torch thread: two workers of two threads each on two cores would only contend.
XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
if XDIST_WORKER:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")


# The tests that took over a minute under `make test` (2 cores, 3 workers; --durations, 2026-12-01), longest
# first. They are collected first, so that xdist hands them out first and the short ones fill in around them:
# started last, they were the tail of the run. A renamed test only loses its place.
LONGEST_FIRST = [
    "test_ray.py::test_ctrl_c_stops_ray_cleanly_and_the_same_command_resumes",  # group ray-own
    "test_ray.py::test_smoke_preset_on_two_ray_workers_gives_the_local_runs_and_trials",  # group ray-shared
    "test_clr_paper.py::test_tiny_quick_reproduction_end_to_end",
    "test_runner.py::test_sigkill_mid_run_then_rerun_equals_an_uninterrupted_run",
    "test_runner.py::test_smoke_benchmark_end_to_end",
    "test_train.py::test_gpu_task_runs_on_a_cpu_with_decoupled_decay_and_a_frozen_whitening_bias",
    "test_clr_paper.py::test_side_by_side_workers_with_stacked_seeds",
    "test_clr_paper.py::test_a_run_stopped_part_way_goes_on_from_its_checkpoint",
    "test_checkpoint.py::test_a_sigkilled_trial_resumes_to_the_same_curve_and_weights_bit_for_bit",
    "test_surface.py::test_docs_notebook_example_runs",
    "test_ensemble.py::test_each_seed_matches_the_one_model_trainer",
    "test_lr_finder.py::test_range_test_on_the_smoke_task",
    "test_store.py::test_a_changed_experiment_stops_before_training",
    "test_nni_experiment.py::test_nni_experiment_runs_trials_on_loopback_only",
    "test_store.py::test_a_killed_workers_claim_is_taken_over",
]


def pytest_collection_modifyitems(config, items):
    def place(item):
        name = item.nodeid.rpartition("tests/")[2]
        return next((i for i, prefix in enumerate(LONGEST_FIRST) if name.startswith(prefix)), len(LONGEST_FIRST))

    items.sort(key=place)  # stable: every other test keeps its collected order


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Every test run decodes into its own cache folder, never the user's. The workers of one xdist run share
    theirs (the cache is written atomically), so the 60,000 JPEGs are decoded once, not once per worker."""
    base = tmp_path_factory.getbasetemp()
    cache = (base.parent if XDIST_WORKER else base) / "cache"
    cache.mkdir(exist_ok=True)
    if XDIST_WORKER:
        import torch

        torch.set_num_threads(1)
    mp = pytest.MonkeyPatch()
    mp.setenv("LRSEARCH_CACHE", str(cache))
    yield
    mp.undo()


@pytest.fixture(scope="session")
def jpeg_data():
    from lrsearch.training.data import load_cifar10

    assert JPEG.exists(), f"{JPEG} is missing: the tests read the shared CIFAR-10 archives beside the checkout"
    return load_cifar10(JPEG)


@pytest.fixture(scope="session")
def mini_data():
    from lrsearch.training.data import load_cifar10

    assert MINI.exists(), f"{MINI} is missing: the tests read the shared CIFAR-10 archives beside the checkout"
    return load_cifar10(MINI)


def trial_count(results: Path) -> int:
    """Trials committed so far in a results folder another process is writing (0 before its store exists)."""
    try:
        with sqlite3.connect(results / "results.sqlite", timeout=1) as conn:
            return conn.execute("SELECT COUNT(*) FROM trials").fetchone()[0]
    except sqlite3.Error:
        return 0
