"""Errors that the CLI turns into one line and an exit code (2: bad usage or input, 1: failure)."""


class RfmError(Exception):
    """A failure with a one-line, user-facing message (exit code 1)."""

    exit_code = 1


class UsageError(RfmError):
    """A user mistake: bad option, bad input file, bad line (exit code 2)."""

    exit_code = 2


class DataError(UsageError):
    """A bad line or file in preference data; the message starts with `path:line:`."""
