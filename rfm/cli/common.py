"""Shared CLI pieces: the error-handling group, option parsers, JSON output."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from rfm.errors import RfmError


class RfmGroup(click.Group):
    """A click group that turns RfmError into one line on stderr and its exit code (2 usage, 1 failure)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RfmError as exc:
            click.echo(f"rfm: error: {exc.cli_message()}", err=True)
            ctx.exit(exc.exit_code)
        except OSError as exc:
            if isinstance(exc, BrokenPipeError):
                raise
            message, code = describe_os_error(exc)
            click.echo(f"rfm: error: {message}", err=True)
            ctx.exit(code)
        except BrokenPipeError:
            sys.stderr.close()
            ctx.exit(1)


# OS errors the user can fix (a path, a permission, a full disk): exit 2 with a hint; anything else: exit 1.
_OS_HINTS = {
    FileNotFoundError: "no such file or folder; check the path",
    NotADirectoryError: "a part of this path is a file, not a folder; choose another path",
    IsADirectoryError: "this is a folder where a file is needed; choose another path",
    FileExistsError: "something is already there; choose another path or remove it",
    PermissionError: "permission denied; choose a path you can write to (or fix its permissions)",
}


def describe_os_error(exc: OSError) -> tuple[str, int]:
    """One line naming the path and what to do, and the exit code (2: the user's environment, 1: otherwise)."""
    import errno

    path = exc.filename if exc.filename is not None else "?"
    if exc.filename2 is not None:
        path = f"{path} -> {exc.filename2}"
    reason = exc.strerror or type(exc).__name__
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"{path}: {reason} (disk full; free space and run again: nothing was half-written)", 1
    if exc.errno == errno.EROFS:
        return f"{path}: {reason} (read-only file system; choose a writable path)", 2
    for kind, hint in _OS_HINTS.items():
        if isinstance(exc, kind):
            return f"{path}: {reason} ({hint})", 2
    return f"{path}: {reason}", 1


def int_list(value: str, option: str) -> list[int]:
    """Parse '1,8,32' into [1, 8, 32] or fail naming the option."""
    try:
        items = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {value!r}", param_hint=option) from None
    if not items:
        raise click.BadParameter("expected at least one integer", param_hint=option)
    return items


def str_list(value: str, option: str, allowed: tuple[str, ...]) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in items if v not in allowed]
    if bad or not items:
        raise click.BadParameter(f"choose from {', '.join(allowed)} (got {value!r})", param_hint=option)
    return items


def echo_json(obj: Any) -> None:
    """Print one machine-readable JSON object on stdout."""
    click.echo(json.dumps(obj, indent=None, sort_keys=False, default=_default))


def _default(obj: Any) -> Any:
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
    except ImportError:  # pragma: no cover
        pass
    return str(obj)


def info(message: str) -> None:
    """Human-facing progress text goes to stderr, so --json output stays clean."""
    click.echo(message, err=True)
