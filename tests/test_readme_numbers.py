"""Every measured number in README.md comes from a committed table or report.

README.md marks the passages that report measurements:

    <!-- measured: results/suite-cpu results/nobn-table -->
    ... text with numbers ...
    <!-- /measured -->

In them, each number followed by a unit (s, ms, min, minutes, %, trials) must appear, within the rounding it
is written with, in a CSV or Markdown file under the folders the marker names: as written (a report's "98
min"), or converted (a percentage as a fraction, milliseconds or minutes as seconds). A number the anchors
published (a paper's, a reference implementation's) is allowed by `PUBLISHED`, with its source.
"""

import re
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"

# (passage marker's first folder, number as written) -> where it was published
PUBLISHED = {
    "94.0%": "airbench94's accuracy on the original CIFAR-10 (Jordan, 2024, arXiv:2404.00498, Table 1)",
    "81.4%": "Smith 2017, Table 1: CIFAR-10 accuracy of the fixed policy at 70,000 iterations and of CLR at 25,000",
    "93%": "the 93% goal airbench94 is named after (Jordan, 2024)",
}
NUMBER = re.compile(r"(?<![\w.])(\d[\d,]*(?:\.\d+)?)\s?(ms|s|min|minutes|%|trials)(?![\w])")
MARKER = re.compile(r"<!-- measured: ([^>]*?) -->(.*?)<!-- /measured -->", re.S)
TO_BASE = {"%": 0.01, "ms": 1e-3, "s": 1.0, "min": 60.0, "minutes": 60.0, "trials": 1.0}


def measured_passages(text: str) -> list[tuple[list[str], str]]:
    return [(m.group(1).split(), m.group(2)) for m in MARKER.finditer(text)]


def _committed(folder: Path) -> list[Path]:
    """The CSV and Markdown files under `folder` that git tracks (all of them outside a git checkout)."""
    try:
        listed = subprocess.run(["git", "ls-files", "--", str(folder)], cwd=REPO, capture_output=True, text=True,
                                check=True, timeout=30).stdout.split()
        files = [REPO / f for f in listed]
    except (OSError, subprocess.SubprocessError):
        files = list(folder.rglob("*"))
    return [f for f in files if f.suffix in (".csv", ".md") and f.is_file()]


def values_in(folders: list[str]) -> np.ndarray:
    """Every number in those folders' committed CSVs (numeric cells) and Markdown files (numbers in the text)."""
    found: list[float] = []
    for folder in folders:
        path = REPO / folder
        assert path.exists(), f"README.md names {folder} as a source, which does not exist"
        for file in _committed(path):
            if file.suffix == ".csv":
                frame = pd.read_csv(file)
                found += frame.select_dtypes("number").to_numpy(dtype=float).ravel().tolist()
            else:
                found += [float(x.replace(",", "")) for x in re.findall(r"(?<![\w.])\d[\d,]*(?:\.\d+)?", file.read_text())]
    values = np.array([v for v in found if np.isfinite(v)])
    return np.sort(values)


def unbacked(text: str) -> list[str]:
    """The measured numbers of `text` that no named source holds (each as 'number unit (passage folders)')."""
    missing = []
    for folders, passage in measured_passages(text):
        values = values_in(folders)
        for m in NUMBER.finditer(passage):
            written, unit = m.group(1).replace(",", ""), m.group(2)
            if m.group(0).replace(" ", "") in {k.replace(" ", "") for k in PUBLISHED}:
                continue
            x = float(written)
            half = 0.5 * 10.0 ** -(len(written.split(".")[1]) if "." in written else 0)
            candidates = [(x, half), (x * TO_BASE[unit], half * TO_BASE[unit])]
            if not any(_near(values, c, tol) for c, tol in candidates):
                missing.append(f"{m.group(0)} ({' '.join(folders)})")
    return missing


def _near(values: np.ndarray, x: float, tol: float) -> bool:
    i = np.searchsorted(values, x - tol * (1 + 1e-9))
    return i < len(values) and values[i] <= x + tol * (1 + 1e-9)


def test_every_measured_number_in_the_readme_is_in_a_committed_table():
    text = README.read_text()
    passages = measured_passages(text)
    assert len(passages) >= 6 and sum(len(NUMBER.findall(p)) for _, p in passages) >= 40
    assert text.count("<!-- measured:") == len(passages), "a measured passage without its closing marker"
    assert unbacked(text) == []


def test_a_number_changed_by_hand_is_caught():
    text = README.read_text()
    folders, passage = next((f, p) for f, p in measured_passages(text) if "90.29%" in p)
    assert unbacked(f"<!-- measured: {' '.join(folders)} -->{passage}<!-- /measured -->") == []
    edited = passage.replace("90.29%", "91.37%", 1)
    assert unbacked(f"<!-- measured: {' '.join(folders)} -->{edited}<!-- /measured -->") == [
        f"91.37% ({' '.join(folders)})"]


@pytest.mark.parametrize("written, unit, source, ok", [
    ("98", "min", "98 min for every worker", True),     # as the report writes it
    ("5880", "s", "98 min", False),                       # not converted that way round
    ("1.5", "minutes", "train_s\n90.2", True),            # 90.2 s is 1.5 minutes to the written rounding
    ("31.5", "%", "target_acc = 0.315", True),
    ("31.6", "%", "target_acc = 0.315", False),
    ("3.35", "ms", "0.00335", True),
])
def test_rounding_and_units(tmp_path, monkeypatch, written, unit, source, ok):
    folder = tmp_path / "results" / "x"
    folder.mkdir(parents=True)
    (folder / "REPORT.md").write_text(source)
    monkeypatch.setattr("test_readme_numbers.REPO", tmp_path)
    monkeypatch.setattr("test_readme_numbers._committed", lambda path: list(path.rglob("*.md")))
    text = f"<!-- measured: results/x -->took {written} {unit} in all<!-- /measured -->"
    assert (unbacked(text) == []) is ok
