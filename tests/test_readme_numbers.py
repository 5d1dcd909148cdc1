"""Every measured number in README.md and docs/*.md names the table cell it was read from, and equals it.

A passage that reports measurements is marked, its cell paths taken from the repository root or from the
folder the marker names:

    <!-- measured from results/suite-cpu-tables -->  ...  <!-- /measured -->

In it, every number is followed by its cell, as an HTML comment (read in the raw text, invisible rendered):

    0.98<!-- scores/score.csv [strategy=random] score_B_time -->
    97%<!-- nobn-lr/tables/summary.csv [strategy=random, budget=16] success_rate -->
    90.68%<!-- results/fast-net-gpu/reference.csv [] mean(tta_test_acc) -->
    0.22<!-- results/fast-net-gpu/summary.csv [variant=task, lr=1.5] std_test_acc:points -->

that is a CSV, the rows `[column=value, ...]` picks (a value is compared as the CSV writes it, or as a number;
quote one that holds a comma), and the column. A column over several rows is aggregated (`mean`, `median`,
`min`, `max`, `std`); otherwise the rows must be one. The number's unit converts it to the cell's (fractions,
seconds): `%` and `points` are hundredths, `ms`, `min`, `minutes` and `h` are seconds' multiples, `x` and none
are as written; `:unit` after the column gives the unit where the text writes none. The number must equal the
cell rounded to the digits written, so that a one-digit edit fails.

A Markdown table names its cells once, in a comment on the line above it:

    <!-- table scores/score.csv | =strategy | score_B_time | iqm_regret iqm_ci_low iqm_ci_high | - -->

one group per Markdown column: `=column` finds the row by that column's text (backticks dropped), `-` leaves
the column unchecked, `~` checks the column's numbers by their own comments, otherwise the group lists the
columns of its numbers in order; a group may start with another CSV path, and `[...]` after the table's path
picks rows for all of them. A checked cell without a number (`never`, `-`) needs a cell that is not finite.
Table headers are labels: they are not read.

Any other number in a measured passage fails, except in code spans, inside names (ResNet-8, H200) and those
in `PUBLISHED`, which the anchors published. `LEGACY` files keep the older passages that name only folders
(`<!-- measured: results/x -->`), where a number needs only to appear somewhere in their CSV or Markdown
files: tie them to their cells, then take the file off the list.
"""

import math
import re
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]

# number as written -> where it was published
PUBLISHED = {
    "94.0%": "airbench94's accuracy on the original CIFAR-10 (Jordan, 2024, arXiv:2404.00498, Table 1)",
    "81.4%": "Smith 2017, Table 1: CIFAR-10 accuracy of the fixed policy at 70,000 iterations and of CLR at 25,000",
    "93%": "the 93% goal airbench94 is named after (Jordan, 2024)",
}
# file -> why its passages still name folders instead of cells
LEGACY: dict[str, str] = {}

TO_BASE = {"": 1.0, "x": 1.0, "%": 0.01, "points": 0.01, "s": 1.0, "ms": 1e-3, "min": 60.0, "minutes": 60.0,
           "h": 3600.0}
AGGREGATES = {"mean": np.mean, "median": np.median, "min": np.min, "max": np.max,
              "std": lambda v: np.std(v, ddof=1)}
NUMBER = re.compile(r"(?<![\w.\-/])((?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?)"
                    r"(?:(%)|\s(ms|s|min|minutes|h|points)\b|(x)\b)?(?![\w/]|\.\d|-\w)")
PASSAGE = re.compile(r"<!-- measured(?: from (\S+))? -->(.*?)<!-- /measured -->", re.S)
LEGACY_PASSAGE = re.compile(r"<!-- measured: ([^>]*?) -->(.*?)<!-- /measured -->", re.S)
COMMENT = re.compile(r"<!--.*?-->", re.S)
REF = re.compile(r"<!--\s*(\S+\.csv)\s*\[([^\]]*)\]\s*(\S+)\s*-->")
TABLE = re.compile(r"<!-- table(?: (\S+\.csv))?\s*(\[[^\]]*\])?\s*((?:\|[^|>]*)+)-->[ \t]*\n((?:[ \t]*\|.*\n?)+)")
COLUMN = re.compile(r"^(?:(mean|median|min|max|std)\((\w+)\)|(\w+))(?::(%|\w+))?$")
FILTER = re.compile(r"\s*([\w.\-]+)\s*=\s*(\"[^\"]*\"|[^,]*)\s*(?:,|$)")


def documents() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


@dataclass
class Cell:
    """One CSV cell (or one aggregate over rows), as a reference names it."""

    path: Path
    filters: dict[str, str]
    column: str
    aggregate: str | None = None
    unit: str = ""

    @classmethod
    def parse(cls, path: str, filters: str, column: str, base: Path) -> "Cell":
        m = COLUMN.match(column)
        if not m:
            raise ValueError(f"column {column!r}: expected name, agg(name) or either with :unit")
        unit = m.group(4) or ""
        if unit not in TO_BASE:
            raise ValueError(f"unit {unit!r} of {column!r}: expected one of {sorted(TO_BASE)}")
        picked = {k: v.strip('"') for k, v in FILTER.findall(filters.strip())} if filters.strip() else {}
        return cls(base / path, picked, m.group(2) or m.group(3), m.group(1), unit)

    def __str__(self) -> str:
        rows = ", ".join(f"{k}={v}" for k, v in self.filters.items())
        column = f"{self.aggregate}({self.column})" if self.aggregate else self.column
        return f"{self.path.relative_to(REPO)} [{rows}] {column}"

    def value(self) -> float:
        """The cell's value; ValueError naming what is missing or ambiguous."""
        if not self.path.is_file():
            raise ValueError(f"{self}: no such file")
        frame = _csv(self.path)
        for name in [*self.filters, self.column]:
            if name not in frame.columns:
                raise ValueError(f"{self}: no column {name!r} (it has {', '.join(frame.columns)})")
        rows = frame
        for name, wanted in self.filters.items():
            rows = rows[rows[name].map(lambda x, w=wanted: _same(x, w))]
        if rows.empty:
            raise ValueError(f"{self}: no row matches")
        values = np.array([_float(x) for x in rows[self.column]])
        if self.aggregate:
            return float(AGGREGATES[self.aggregate](values))
        if len(values) != 1:
            raise ValueError(f"{self}: {len(values)} rows match; pick one or aggregate (mean(...), max(...))")
        return float(values[0])


@cache
def _csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def _float(x: str) -> float:
    try:
        return float(x)
    except ValueError:
        return math.nan


def _same(cell: str, wanted: str) -> bool:
    if cell.strip() == wanted.strip():
        return True
    a, b = _float(cell), _float(wanted)
    return math.isfinite(a) and math.isfinite(b) and math.isclose(a, b, rel_tol=1e-12)


def as_written(written: str, unit: str) -> str:
    return f"{written}{unit}" if unit in ("", "%", "x") else f"{written} {unit}"


def mismatch(written: str, unit: str, cell: Cell) -> str | None:
    """Why the number as written is not the cell at its rounding (None when it is)."""
    unit = unit or cell.unit
    try:
        value = cell.value()
    except ValueError as e:
        return str(e)
    digits = len(written.split(".")[1]) if "." in written else 0
    x = float(written.replace(",", ""))
    if not math.isfinite(value):
        return f"{as_written(written, unit)} names {cell}, which holds {value}"
    scale = TO_BASE[unit]
    if abs(x * scale - value) <= 0.5 * 10.0 ** -digits * scale * (1 + 1e-9):
        return None
    return (f"{as_written(written, unit)} names {cell}, which holds {value:.6g}: "
            f"write {as_written(f'{value / scale:.{digits}f}', unit)}")


@dataclass
class Number:
    """A number in a document: where, as written, and the cell it names (None: untied)."""

    where: str
    written: str
    unit: str
    cell: Cell | None
    span: tuple[int, int]


def _line(text: str, at: int) -> int:
    return text.count("\n", 0, at) + 1


def _blank(text: str, pattern: str) -> str:
    return re.sub(pattern, lambda m: " " * len(m.group(0)), text, flags=re.S)


def read_numbers(text: str, name: str = "README.md") -> tuple[list[Number], list[str]]:
    """Every number of the measured passages of `text`, and the problems found reading them."""
    numbers, problems = [], []
    for passage in PASSAGE.finditer(text):
        base = REPO / (passage.group(1) or "")
        start = passage.start(2)
        body = passage.group(2)
        for table in TABLE.finditer(body):
            at = start + table.start()
            try:
                numbers += _table_numbers(table, base, text, at, name)
            except ValueError as e:
                problems.append(str(e))
            body = body[:table.start()] + _blank(table.group(0), r"[^\n]") + body[table.end():]
        found, trouble = _inline(body, base, lambda at, s=start: f"{name}:{_line(text, s + at)}")
        numbers += [Number(n.where, n.written, n.unit, n.cell, (start + n.span[0], start + n.span[1])) for n in found]
        problems += trouble
    return numbers, problems


def _inline(body: str, base: Path, where_of) -> tuple[list[Number], list[str]]:
    """The numbers of `body` outside code, comments and link targets, each with the cell its comment names."""
    numbers, problems = [], []
    plain = _blank(_blank(_blank(body, r"<!--.*?-->"), r"`[^`\n]*`"), r"\]\([^)]*\)")
    for m in NUMBER.finditer(plain):
        unit = m.group(2) or m.group(3) or m.group(4) or ""
        ref = REF.match(body, m.end())
        cell = None
        if ref:
            try:
                cell = Cell.parse(ref.group(1), ref.group(2), ref.group(3), base)
            except ValueError as e:
                problems.append(f"{where_of(m.start())}: {e}")
                continue
        numbers.append(Number(where_of(m.start()), m.group(1), unit, cell, (m.start(1), m.end(1))))
    return numbers, problems


def _table_numbers(table: re.Match, base: Path, text: str, at: int, name: str) -> list[Number]:
    """The numbers of a Markdown table whose columns a `<!-- table ... -->` comment maps to CSV columns."""
    path, filters = table.group(1), (table.group(2) or "[]")[1:-1]
    groups = [g.split() for g in table.group(3).strip().strip("|").split("|")]
    lines = table.group(4).rstrip("\n").split("\n")
    numbers = []
    offset = table.start(4) - table.start()
    for i, line in enumerate(lines):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if i == 0 or set("".join(cells)) <= set("-: "):
            offset += len(line) + 1
            continue
        where = f"{name}:{_line(text, at + offset)}"
        try:
            numbers += _row_numbers(cells, groups, path, filters, base, where)
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None
        offset += len(line) + 1
    return numbers


def _row_numbers(cells: list[str], groups: list[list[str]], path: str, filters: str, base: Path,
                 where: str) -> list[Number]:
    if len(cells) != len(groups):
        raise ValueError(f"the row has {len(cells)} columns, the comment maps {len(groups)}")
    keys = {g[0][1:]: c.replace("`", "") for g, c in zip(groups, cells) if g and g[0].startswith("=")}
    numbers = []
    for group, content in zip(groups, cells):
        if not group or group[0] == "-" or group[0].startswith("="):
            continue
        if group == ["~"]:
            found, trouble = _inline(content, base, lambda at: where)
            if trouble:
                raise ValueError(trouble[0])
            numbers += [Number(n.where, n.written, n.unit, n.cell, (0, 0)) for n in found]
            continue
        source = path
        if group[0].endswith(".csv"):
            source, group = group[0], group[1:]
        if source is None:
            raise ValueError(f"no CSV named for the columns {group}")
        keyed = ", ".join([filters, *(f'{k}="{v}"' for k, v in keys.items())]).strip(", ")
        written = list(NUMBER.finditer(_blank(content, r"`[^`]*`")))
        if not written:
            numbers += [Number(where, "", "", Cell.parse(source, keyed, column, base), (0, 0)) for column in group]
        elif len(written) != len(group):
            raise ValueError(f"{content!r} holds {len(written)} numbers, the comment maps {group}")
        for m, column in zip(written, group):
            unit = m.group(2) or m.group(3) or m.group(4) or ""
            numbers.append(Number(where, m.group(1), unit, Cell.parse(source, keyed, column, base), (0, 0)))
    return numbers


def problems_in(text: str, name: str = "README.md") -> list[str]:
    """Every measured number of `text` that is untied, names no cell, or differs from its cell."""
    numbers, problems = read_numbers(text, name)
    for n in numbers:
        if n.cell is None:
            if f"{n.written}{n.unit}" not in PUBLISHED:
                problems.append(f"{n.where}: {as_written(n.written, n.unit)} names no cell "
                                "(add <!-- path.csv [rows] column -->)")
        elif n.written == "":
            try:
                value = n.cell.value()
            except ValueError as e:
                problems.append(f"{n.where}: {e}")
                continue
            if math.isfinite(value):
                problems.append(f"{n.where}: no number written for {n.cell}, which holds {value:.6g}")
        elif (why := mismatch(n.written, n.unit, n.cell)) is not None:
            problems.append(f"{n.where}: {why}")
    if name not in LEGACY and LEGACY_PASSAGE.search(text):
        problems.append(f"{name}: a passage names folders (<!-- measured: ... -->): name each number's cell")
    return problems


# ------------------------------------------------------------ the documents as committed


def test_every_measured_number_equals_the_cell_it_names():
    problems, tied = [], 0
    for path in documents():
        name = str(path.relative_to(REPO))
        text = path.read_text()
        problems += problems_in(text, name)
        tied += sum(n.cell is not None for n in read_numbers(text, name)[0])
        assert text.count("<!-- measured") == text.count("<!-- /measured -->"), f"{name}: a passage left open"
    assert problems == []
    assert tied >= 100


def test_the_readme_first_screen_holds_measured_findings():
    head = "\n".join((REPO / "README.md").read_text().split("\n")[:60])
    numbers, _ = read_numbers(head)
    assert sum(n.cell is not None for n in numbers) >= 20
    for must in ["make benchmark", "make test", *(f"docs/{p.name}" for p in (REPO / "docs").glob("*.md"))]:
        assert must in head, f"{must} is not on the README's first screen (its first 60 lines)"


def _edits(written: str) -> list[str]:
    """`written` with each of its digits changed by one (9 becomes 8)."""
    out = []
    for i, ch in enumerate(written):
        if ch.isdigit():
            out.append(written[:i] + str(int(ch) + 1 if ch != "9" else 8) + written[i + 1:])
    return out


def test_a_one_digit_edit_to_any_tied_number_fails():
    checked = 0
    for path in documents():
        for n in read_numbers(path.read_text(), str(path.relative_to(REPO)))[0]:
            if n.cell is None or not n.written:
                continue
            for edited in _edits(n.written):
                assert mismatch(edited, n.unit, n.cell) is not None, f"{n.where}: {edited} for {n.written} passes"
                checked += 1
    assert checked >= 200


@pytest.mark.parametrize("nth", [0, 5, 12, -1])
def test_a_one_digit_edit_in_the_readme_text_is_named(nth):
    text = (REPO / "README.md").read_text()
    assert problems_in(text) == []
    prose = [n for n in read_numbers(text)[0] if n.cell is not None and n.span != (0, 0)]
    n = prose[nth]
    a, b = n.span
    edited = _edits(n.written)[-1]
    problems = problems_in(text[:a] + edited + text[b:])
    assert len(problems) == 1 and str(n.cell) in problems[0]
    assert f"{as_written(edited, n.unit or n.cell.unit)} names" in problems[0]


def test_a_one_digit_edit_in_a_table_is_named():
    text = (REPO / "README.md").read_text()
    table = TABLE.search(text)
    row = table.group(4).split("\n")[2]
    m = re.search(r"\d\.\d+", row)
    edited_row = row[:m.start()] + _edits(m.group(0))[-1] + row[m.end():]
    problems = problems_in(text.replace(row, edited_row, 1))
    assert len(problems) == 1 and "write " in problems[0]


def test_an_untied_number_in_a_measured_passage_fails():
    text = "<!-- measured -->It took 12.5 s<!-- /measured -->"
    assert problems_in(text) == ["README.md:1: 12.5 s names no cell (add <!-- path.csv [rows] column -->)"]
    assert problems_in("<!-- measured -->`budget = 16`, ResNet-8 on an H200, as 94.0% in print<!-- /measured -->") == []


# ------------------------------------------------------------ the rules, on a small table


@pytest.fixture
def table(tmp_path, monkeypatch):
    monkeypatch.setattr("test_readme_numbers.REPO", tmp_path)
    (tmp_path / "t.csv").write_text("name,kind,acc,time_s,n\na,x,0.3154,90.2,16\nb,\"p, q\",0.9068,0.00335,3\n"
                                    "b,y,0.9052,inf,5\n")
    return tmp_path


@pytest.mark.parametrize("written, ref, ok", [
    ("31.5%", "t.csv [name=a] acc", True),
    ("31.6%", "t.csv [name=a] acc", False),
    ("0.3154", "t.csv [name=a] acc", True),
    ("0.32", "t.csv [name=a] acc", True),           # rounded to the digits written
    ("0.31", "t.csv [name=a] acc", False),
    ("31.5 points", "t.csv [name=a] acc", True),
    ("31.5", "t.csv [name=a] acc:points", True),    # the unit from the reference where the text has none
    ("1.5 min", "t.csv [name=a] time_s", True),     # 90.2 s is 1.5 minutes at the written rounding
    ("1.6 min", "t.csv [name=a] time_s", False),
    ("3.35 ms", 't.csv [kind="p, q"] time_s', True),
    ("16", "t.csv [name=a] n", True),               # unitless numbers too
    ("17", "t.csv [name=a] n", False),
    ("4", "t.csv [name=b] mean(n)", True),
    ("90.60%", "t.csv [name=b] mean(acc)", True),
    ("0.9068", "t.csv [name=b] acc", False),        # two rows and no aggregate
    ("3", "t.csv [name=b, kind=y] n", False),
    ("1", "t.csv [name=b, kind=y] time_s", False),  # a number for an infinite cell
    ("1", "t.csv [name=c] n", False),               # no such row
    ("1", "t.csv [name=a] speed", False),           # no such column
])
def test_rounding_units_rows_and_aggregates(table, written, ref, ok):
    text = f"<!-- measured -->took {written}<!-- {ref} --> in all<!-- /measured -->"
    assert (problems_in(text) == []) is ok, problems_in(text)


def test_a_table_comment_maps_columns_and_rows(table):
    text = ("<!-- measured -->\n<!-- table t.csv [kind=x] | =name | acc | t.csv time_s n -->\n"
            "| name | acc | time, n |\n| --- | ---: | --- |\n| `a` | 31.5% | 90.2 s, 16 |\n<!-- /measured -->")
    assert problems_in(text) == []
    assert "write 90.2" in problems_in(text.replace("90.2 s", "91.2 s"))[0]
    assert "'90.2 s' holds 1 numbers" in problems_in(text.replace("90.2 s, 16", "90.2 s"))[0]
    own = ("<!-- measured -->\n<!-- table | - | ~ -->\n| what, 5 runs | acc |\n| --- | --- |\n"
           "| run 2 | 90.6%<!-- t.csv [name=b] mean(acc) --> |\n<!-- /measured -->")
    assert problems_in(own) == []
    assert "write 90.6%" in problems_in(own.replace("90.6%", "90.5%"))[0]
    infinite = ("<!-- measured -->\n<!-- table t.csv | =kind | time_s -->\n| kind | time |\n| --- | --- |\n"
                "| y | never |\n| x | never |\n<!-- /measured -->")
    assert problems_in(infinite) == ["README.md:6: no number written for t.csv [kind=x] time_s, which holds 90.2"]


# ------------------------------------------------------------ passages not tied yet (LEGACY)


def _committed(folder: Path) -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "--", str(folder)], cwd=REPO, capture_output=True, text=True,
                            timeout=30).stdout.split()
    return [REPO / f for f in listed if f.endswith((".csv", ".md")) and (REPO / f).is_file()]


def _values_in(folders: list[str]) -> np.ndarray:
    found: list[float] = []
    for folder in folders:
        assert (REPO / folder).exists(), f"a passage names {folder}, which does not exist"
        for file in _committed(REPO / folder):
            if file.suffix == ".csv":
                found += pd.read_csv(file).select_dtypes("number").to_numpy(dtype=float).ravel().tolist()
            else:
                found += [float(x.replace(",", "")) for x in re.findall(r"(?<![\w.])\d[\d,]*(?:\.\d+)?", file.read_text())]
    return np.sort([v for v in found if np.isfinite(v)])


@pytest.mark.parametrize("name", sorted(LEGACY))
def test_legacy_passages_hold_numbers_their_folders_hold(name):
    text = (REPO / name).read_text()
    passages = LEGACY_PASSAGE.findall(text)
    assert passages, f"{name} names no folders any more: take it off LEGACY"
    loose = re.compile(r"(?<![\w.])(\d[\d,]*(?:\.\d+)?)\s?(ms|s|min|minutes|%|trials)(?![\w])")
    missing = []
    for folders, passage in passages:
        values = _values_in(folders.split())
        for m in loose.finditer(passage):
            if m.group(0).replace(" ", "") in PUBLISHED:
                continue
            written, unit = m.group(1).replace(",", ""), m.group(2)
            half = 0.5 * 10.0 ** -(len(written.split(".")[1]) if "." in written else 0)
            scale = {"%": 0.01, "ms": 1e-3, "min": 60.0, "minutes": 60.0}.get(unit, 1.0)
            x = float(written)
            if not any(np.any(np.abs(values - c) <= tol * (1 + 1e-9)) for c, tol in [(x, half), (x * scale, half * scale)]):
                missing.append(m.group(0))
    assert missing == []
