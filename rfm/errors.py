"""Errors that the CLI turns into one line and an exit code (2: bad usage or input, 1: failure)."""

from __future__ import annotations


class RfmError(Exception):
    """A failure with a one-line, user-facing message (exit code 1)."""

    exit_code = 1

    def cli_message(self) -> str:
        """The line the CLI prints (after `rfm: error: `)."""
        return str(self)


class UsageError(RfmError):
    """A user mistake: bad option, bad input file, bad line (exit code 2).

    `param` names the parameter at fault the Python way (`device`); the CLI shows it as its option
    (`--device`), so library code never speaks in command-line flags.
    """

    exit_code = 2

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param

    def __str__(self) -> str:
        message = super().__str__()
        return f"{self.param}: {message}" if self.param else message

    def cli_message(self) -> str:
        message = super().__str__()
        return f"--{self.param.replace('_', '-')}: {message}" if self.param else message


class DataError(UsageError):
    """A bad line or file in preference data; the message starts with `path:line:`."""
