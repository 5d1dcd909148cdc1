import sqlite3
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
JPEG = SHARED / "cifar10-jpeg.tar.gz"
MINI = SHARED / "cifar-10-mini-python.tar.gz"


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Every test session decodes into its own cache folder, never the user's."""
    mp = pytest.MonkeyPatch()
    mp.setenv("LRSEARCH_CACHE", str(tmp_path_factory.mktemp("cache")))
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
