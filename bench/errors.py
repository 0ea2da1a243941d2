"""The one exception type for errors a user can cause: the CLI prints its message on one line."""


class BenchError(Exception):
    """A user-facing error (bad flag, missing data, corrupt file). Never shown as a traceback."""
