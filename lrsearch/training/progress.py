"""Progress for people: a rich progress bar on a terminal, log lines everywhere else.

Everything lrsearch reports while it works goes through the `lrsearch` logger. A line flagged
as progress (`extra=PROGRESS`: one per finished trial, run or evaluation) reaches the console
only when no bar stands for it: when stderr is not a terminal (CI, nohup, a cluster job) or
with --verbose. `configure_logging` is the command line's set-up (`--quiet`, `--verbose`);
a library user keeps Python's defaults (warnings only) unless they configure `lrsearch`.
"""

from __future__ import annotations

import logging
import sys

LOG = logging.getLogger("lrsearch")
PROGRESS = {"progress": True}  # `extra` for lines that a progress bar stands for on a terminal
_console = {"quiet": False, "verbose": False}


def bar_wanted() -> bool:
    """Whether a progress bar should be drawn: stderr is a terminal and the console is not quiet."""
    return sys.stderr.isatty() and not _console["quiet"]


class _NotWhileBar(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return _console["verbose"] or not (getattr(record, "progress", False) and bar_wanted())


def configure_logging(quiet: bool = False, verbose: bool = False) -> None:
    """The console handler of the `lrsearch` command: warnings only with `quiet`, every line (and the
    search libraries' own, e.g. Optuna's per-trial lines) with `verbose`, else info lines."""
    _console.update(quiet=quiet, verbose=verbose)
    for handler in [h for h in LOG.handlers if getattr(h, "lrsearch_console", False)]:
        LOG.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.lrsearch_console = True
    handler.setLevel(logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    handler.addFilter(_NotWhileBar())
    LOG.addHandler(handler)
    LOG.setLevel(logging.DEBUG if verbose else logging.INFO)
    LOG.propagate = False


def libraries_verbose() -> bool:
    """Whether the search libraries' own log lines should show (--verbose)."""
    return _console["verbose"]


class Bar:
    """A rich progress bar when `bar_wanted()`, else nothing: callers log their lines either way."""

    def __init__(self, total: int, name: str):
        self.progress = None
        if bar_wanted():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
            self.progress = Progress(TextColumn(f"[bold]{name}"), BarColumn(), MofNCompleteColumn(),
                                     TextColumn("{task.fields[info]}"), TimeRemainingColumn())
            self.progress.start()
            self.id = self.progress.add_task(name, total=total, info="")

    def update(self, completed: int | None = None, advance: int = 0, info: str | None = None) -> None:
        if self.progress is not None:
            fields = {} if info is None else {"info": info}
            if completed is not None:
                self.progress.update(self.id, completed=completed, **fields)
            else:
                self.progress.update(self.id, advance=advance, **fields)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
