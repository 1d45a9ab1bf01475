"""The one exception the labs raise for bad input; the CLI turns it into one line and exit code 2."""


class UsageError(Exception):
    """Bad input from the user: reported as one line on stderr, exit code 2, no traceback."""
