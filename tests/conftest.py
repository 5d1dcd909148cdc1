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
