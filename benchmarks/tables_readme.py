"""results/tables/README.md from the tables themselves: each table's size, status, CPU time, provenance and noise checks.

    python benchmarks/tables_readme.py [--root results/tables]

Run it after `make tables` has added trials (it reads every <root>/*/results.sqlite; nothing here is typed by hand).
A complete table also gets its TARGET.md: the noise checks at the target tasks.py sets.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

from lrsearch.experiment.table import Table
from lrsearch.reporting.noise import check_table
from lrsearch.training.errors import InputError

HEAD = """# Tables: every configuration measured once, carefully

Each folder is one table: a grid over a search space x seeds, every cell a real training run stored with its full
curve, steps and wall seconds (`results.sqlite`, an ordinary resumable run of the store). The 1-D tables are 32
log-spaced LRs x 10 seeds; the multi-dimensional ones a product grid of 8 LRs x 3 x 3 (finetune: 8 x 2 x 2 x 3) x
4 seeds. Their configs are `experiments/tables/*.toml` (5,000 validation images, 6 to 8 s of training on one core);
`make tables` (benchmarks/tables.sh) records them in two lanes of one torch thread each, and the same command goes
on from where a table stopped. Wall seconds here are the recording day's, on a machine that also ran tests part of
the time; the cost clock (`results/calibration`) prices the steps. `lrsearch run` answers trials from a table
(`table = "results/tables/<name>"`, docs/replay.md "Search on the tables"); `lrsearch.bench(name)` and
`lrsearch export --format syne-tune` publish them.

This file is written by `python benchmarks/tables_readme.py` from the stores.
"""


def describe(folder: Path) -> list[str]:
    meta = json.loads((folder / "experiment.json").read_text())
    expected = meta["budgets"][0] * len(meta["seeds"])
    with sqlite3.connect(folder / "results.sqlite") as conn:
        n, wall, first, last = conn.execute("SELECT COUNT(*), SUM(wall_s), MIN(finished_at), MAX(finished_at) "
                                            "FROM trials").fetchone()
        env = json.loads(conn.execute("SELECT environment FROM runs ORDER BY run_id LIMIT 1").fetchone()[0])
    lines = [f"### {folder.name}: {n} of {expected} trials", ""]
    try:
        table = Table.load(folder)
        lines.append(f"- {table.describe()}")
    except InputError as err:
        lines.append(f"- not answerable yet: {err}")
    when = " to ".join(datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M UTC") for t in (first, last))
    lines += [f"- CPU time: {wall / 3600:.2f} core-hours of trial wall-clock (training and evaluation, one torch "
              f"thread), recorded {when}",
              f"- command: `{env.get('command', '')}`",
              f"- git commit `{env.get('git_commit', '')}`, {env.get('device', '')}",
              f"- versions: {', '.join(f'{k} {v}' for k, v in list(env.get('versions', {}).items())[:4])}", ""]
    if n == expected:
        checks = check_table(folder)[1]
        lines += ["```", checks, "```", ""]
        (folder / "TARGET.md").write_text(  # the workload's target and whether its table can rank strategies
            f"# {folder.name}: noise checks at its target (its table config's `target_acc` where it sets one, "
            "else lrsearch/training/tasks.py's)\n\n"
            f"Written by `python benchmarks/tables_readme.py` from `results.sqlite` ({n} trials); "
            "lrsearch/reporting/noise.py has the checks.\n\n```\n" + checks + "\n```\n")
    else:
        lines += ["(noise checks once complete)", ""]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("results/tables"))
    args = parser.parse_args()
    lines = [HEAD, "## Status, cost and noise checks (`lrsearch/reporting/noise.py`, at each table's target: its config's `target_acc`, else tasks.py's)", ""]
    for folder in sorted(p for p in args.root.iterdir() if (p / "results.sqlite").is_file()):
        lines += describe(folder)
    (args.root / "README.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
