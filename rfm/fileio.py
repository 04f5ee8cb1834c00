"""Atomic file writes shared by every stage: temp file + fsync + rename, nothing half-written."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from rfm.errors import UsageError


def _process_umask() -> int:
    """The umask, read once at import (reading it means setting it: racy in a threaded app, so only here)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _process_umask()


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8",
                private: bool = False) -> Iterator[IO]:
    """Open a temp file beside `path`; on success fsync and rename it over `path`, else remove it.

    The file gets the usual permissions (0666 less the umask), or owner-only with `private` (a person's data).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    binary = "b" in mode
    try:
        if not private:  # mkstemp makes 0600
            if hasattr(os, "fchmod"):
                os.fchmod(fd, 0o666 & ~_UMASK)
            else:  # Windows before Python 3.13: only the read-only bit exists there anyway
                os.chmod(tmp, 0o666 & ~_UMASK)
        with os.fdopen(fd, mode, encoding=None if binary else encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically."""
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def check_output_dir(out: str | os.PathLike, overwrite: bool) -> Path:
    """Fail early, before any work, if `out` exists and may not be replaced."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise UsageError(f"{out}: output dir exists (pass --overwrite to replace it)")
    return out


def staging_dir(out: str | os.PathLike, overwrite: bool) -> Path:
    """A fresh temp dir beside `out`; the finished run is renamed into place by `publish`."""
    out = check_output_dir(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))


def publish(staging: Path, out: str | os.PathLike) -> None:
    """Swap the finished staging dir into `out` (the old one is removed only after success)."""
    out = Path(out)
    if out.exists():
        trash = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
        os.replace(out, trash / "old")
        os.replace(staging, out)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(staging, out)
