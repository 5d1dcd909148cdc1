"""The one error type the command prints as a single line (no traceback), exit status 2."""


class UserError(Exception):
    """An error in what the user asked for; printed as one line."""
