"""`lrsearch export`: a recorded table in another benchmark library's format (experiment/bench.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

FORMATS = ("syne-tune",)

DESCRIPTION = """\
Write a table that `lrsearch tabulate` recorded as a benchmark for another library.

syne-tune: Syne Tune's blackbox-repository layout, written by Syne Tune's own BlackboxTabular and serialize:
hyperparameters.parquet (one row per grid point), objectives_evaluations.npy shaped (1 task, points, seeds,
fidelities, objectives), fidelities_values.npy (the recorded evaluation steps), configspace.json (each axis a
nearest-neighbour ordinal over its grid values, log where the space is log, and `task`, a constant: Syne Tune
0.16 under pandas 3 cannot look up a blackbox of one hyperparameter column), fidelityspace.json (`steps`) and
metadata.json. Syne Tune's seed axis holds the recorded seeds, in the order metadata.json's "seeds" lists.
Objectives: metric_valid_error (1 - val_acc; the default metric, minimised), metric_test_error,
metric_elapsed_time (seconds of training up to the step on the cost clock, cumulative), metric_runtime (that
step's share), metric_recorded_train_time (recorded wall seconds, the check) and metric_diverged.

Diverged runs stop at the evaluation where their loss blew up, short of the last step. No cell is dropped: from
that step on, their valid and test errors are chance error (1 - 1/classes, what a model with non-finite weights
scores), metric_diverged is 1 there, and the elapsed time stays at what the run spent until it stopped. A failed
run cannot be filled: a table with one is refused.

Load it in Syne Tune with
  from syne_tune.blackbox_repository.blackbox_tabular import deserialize
  blackbox = deserialize(DIR)[TASK]
and simulate a scheduler on it with UserBlackboxBackend(blackbox, elapsed_time_attr="metric_elapsed_time")
(BlackboxRepositoryBackend loads only the blackboxes Syne Tune registers and downloads). Syne Tune's blackbox
repository needs fastparquet and huggingface_hub beside it."""


def _export(args: argparse.Namespace) -> int:
    from lrsearch.experiment.bench import bench, export_syne_tune

    b = bench(args.table, calibration=False if args.calibration == "none" else args.calibration)
    folder = export_syne_tune(b, args.dir)
    diverged = sum(c.status == "diverged" for c in b.table.cells.values())
    print(f"{folder}: Syne Tune blackbox {b.task!r} from {b.table.folder}: {len(b.table.points)} grid points x "
          f"{len(b.seeds)} seeds x fidelity steps {', '.join(map(str, b.fidelities))}; {diverged} diverged runs "
          f"filled with chance error past their divergence; elapsed time: {b.cost_clock}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    e = sub.add_parser("export", help="write a recorded table as a benchmark for another library (Syne Tune)",
                       description=DESCRIPTION)
    e.add_argument("table", metavar="TABLE", help="a table's name under results/tables/ (nobn) or the folder "
                   "`lrsearch tabulate` wrote")
    e.add_argument("dir", metavar="DIR", type=Path, help="the folder to write (created; its files are replaced)")
    e.add_argument("--format", choices=FORMATS, default="syne-tune", help="the library's layout (default: %(default)s)")
    e.add_argument("--calibration", metavar="PATH", help="the cost clock's calibration (a folder or its "
                   "calibration.csv); `none`: the recorded training seconds (default: results/calibration when it "
                   "prices the table's task, else the recorded training seconds)")
    e.set_defaults(func=_export)
