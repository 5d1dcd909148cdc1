"""The `lrsearch` command: parses the arguments, calls one function of a lower layer, prints.

May import every layer below (paper, reporting, experiment, search, training); nothing imports it.
`UserError` (in `errors`) is the one error printed as a single line.
"""

from lrsearch.cli._app import main

__all__ = ["main"]
