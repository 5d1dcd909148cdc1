"""The one type of error that means "what you gave is wrong", not "lrsearch is wrong".

`InputError` (a ValueError) is raised for a bad config, option, space, path, workload or stored state that
no longer matches: its message names the field or path, what was expected and the fix. The command line
prints it as one line and exits 2. Any other exception inside a run is a bug: the command lets it through,
so Python prints its traceback and exits 1. It lives in the bottom layer so that every layer can raise it.
"""


class InputError(ValueError):
    """What the user gave (a config, an option, a path, a stored run) is wrong; the message says how to fix it."""
