"""Per-user weight files on local disk (docs/DESIGN.md §3.4).

One JSON file per (artifact fingerprint, user): root/<fingerprint[:16]>/<sha256(user id)[:40]>.json.
It holds w, the user's stored feature differences (bounded; oldest dropped first) so that a refit is
exact, counts, timestamps and the format version. Writes are atomic (temp + fsync + rename) under an
exclusive lock on a sibling .lock file, so concurrent writers lose nothing. A corrupt, truncated or
foreign file is an error that names it and is never overwritten. User ids never touch the path.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rfm.adapt.user import ADAPTER_PRIORS

from rfm.errors import RfmError, UsageError
from rfm.fileio import atomic_open
from rfm.paths import user_data_dir

USER_FORMAT = "rfm-user"
USER_FORMAT_VERSION = 1
MAX_USER_ID_BYTES = 4096


class StoreError(RfmError):
    """A user file that is corrupt, truncated or belongs to another artifact."""


@dataclass
class UserRecord:
    """What is stored for one user of one artifact."""

    user_id: str
    fingerprint: str
    w: np.ndarray
    deltas: np.ndarray  # (m, d): phi(chosen) - phi(rejected), newest last
    feedback_total: int = 0
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)
    prior: str = "population"  # the adapter prior w was fitted with; later feedback keeps it
    # The choices themselves (prompt, chosen, rejected), newest last, as many as `deltas`: what lets a
    # new model (another fingerprint) refit this user instead of starting over.
    choices: list[tuple[str, str, str]] = field(default_factory=list)
    migrated_from: str | None = None

    def to_json(self) -> dict:
        return {"format": USER_FORMAT, "format_version": USER_FORMAT_VERSION, "fingerprint": self.fingerprint,
                "user_id": self.user_id, "d": len(self.w), "w": self.w.tolist(), "deltas": self.deltas.tolist(),
                "feedback_total": self.feedback_total, "stored": len(self.deltas),
                "created": self.created, "updated": self.updated, "prior": self.prior,
                "choices": [list(c) for c in self.choices],
                **({"migrated_from": self.migrated_from} if self.migrated_from else {})}


def _reject_constant(value: str) -> float:
    raise ValueError(f"non-finite number {value}")


def parse_choices(value) -> list[tuple[str, str, str]]:
    """Stored choices: a list of [prompt, chosen, rejected] strings (ValueError otherwise)."""
    if not isinstance(value, list):
        raise ValueError("choices must be a list")
    choices = []
    for item in value:
        if not (isinstance(item, list) and len(item) == 3 and all(isinstance(t, str) for t in item)):
            raise ValueError("each choice must be [prompt, chosen, rejected]")
        choices.append((item[0], item[1], item[2]))
    return choices


def parse_user_file(raw: bytes, source: str, d: int | None = None) -> UserRecord:
    """A user file's bytes as a record (`d`: the weights' expected length, None to take the file's own);
    StoreError naming `source` if anything is off. The one parser of user files: reads, history, import."""
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
        if not isinstance(data, dict) or data.get("format") != USER_FORMAT:
            raise ValueError("not an rfm user file")
        if data.get("format_version") != USER_FORMAT_VERSION:
            raise ValueError(f"unknown format version {data.get('format_version')!r}")
        w = np.asarray(data["w"], dtype=np.float64)
        deltas = np.asarray(data["deltas"], dtype=np.float64).reshape(-1, len(w))
        if w.ndim != 1 or (d is not None and w.shape != (d,)):
            raise ValueError(f"w has {w.size} values, the artifact has d={d}")
        if not (np.all(np.isfinite(w)) and np.all(np.isfinite(deltas))):
            raise ValueError("NaN or inf in the weights")
        prior = data.get("prior", "population")
        if prior not in ADAPTER_PRIORS:
            raise ValueError(f"unknown prior {prior!r}")
        return UserRecord(str(data["user_id"]), str(data["fingerprint"]), w, deltas, int(data["feedback_total"]),
                          float(data["created"]), float(data["updated"]), prior,
                          parse_choices(data.get("choices", [])), data.get("migrated_from"))
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, OverflowError, RecursionError) as exc:
        raise StoreError(f"{source}: corrupt user file ({exc}); it was left untouched — move it away or "
                         "delete this user") from None


def check_user_id(user_id: str) -> str:
    if not isinstance(user_id, str) or not user_id:
        raise UsageError("must be a non-empty string", param="user")
    if len(user_id.encode("utf-8", "surrogatepass")) > MAX_USER_ID_BYTES:
        raise UsageError(f"id longer than {MAX_USER_ID_BYTES} bytes", param="user")
    return user_id


def user_file_name(user_id: str) -> str:
    """A fixed-length, path-safe name: the user id itself never becomes a path component."""
    return hashlib.sha256(user_id.encode("utf-8", "surrogatepass")).hexdigest()[:40] + ".json"


def _acquire(path: Path) -> int:
    """Open and lock `path`; retry if it was unlinked (by `delete`) while we waited, so the lock we hold
    is always the file at `path` and two writers can never hold different inodes of one lock."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        if os.name == "nt":  # pragma: no cover - exercised on Windows only (an open file cannot be unlinked)
            import msvcrt

            msvcrt.locking(fd, msvcrt.LK_LOCK, 1)
            return fd
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock held on `path` (created if needed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = _acquire(path)
    try:
        yield
    finally:
        os.close(fd)  # closing releases the lock


class UserStore:
    """The users of one artifact (by fingerprint) under a root folder."""

    def __init__(self, fingerprint: str, d: int, root: str | os.PathLike | None = None, max_deltas: int = 512):
        self.root = Path(root) if root else user_data_dir()
        self.fingerprint, self.d, self.max_deltas = fingerprint, int(d), int(max_deltas)
        self.folder = self.root / fingerprint[:16]

    def path(self, user_id: str) -> Path:
        return self.folder / user_file_name(check_user_id(user_id))

    @contextlib.contextmanager
    def locked(self, user_id: str) -> Iterator[Path]:
        path = self.path(user_id)
        with file_lock(path.with_suffix(".lock")):
            yield path

    def read(self, user_id: str) -> UserRecord | None:
        """The user's record, None if they have none; StoreError if the file is bad."""
        return self._read_path(self.path(user_id), expect_user=user_id)

    def _read_path(self, path: Path, expect_user: str | None = None) -> UserRecord | None:
        if not path.exists():
            return None
        record = parse_user_file(path.read_bytes(), str(path), self.d)
        if record.fingerprint != self.fingerprint:
            raise StoreError(f"{path}: belongs to another artifact (fingerprint {record.fingerprint[:12]}…, "
                             f"expected {self.fingerprint[:12]}…); it was left untouched")
        if expect_user is not None and record.user_id != expect_user:
            raise StoreError(f"{path}: holds another user's data; it was left untouched")
        return record

    def write(self, record: UserRecord) -> Path:
        """Atomically replace the user's file (call inside `locked`)."""
        if not (np.all(np.isfinite(record.w)) and np.all(np.isfinite(record.deltas))):
            raise UsageError("refusing to store NaN or inf weights")
        record.deltas = record.deltas[-self.max_deltas :]
        record.choices = record.choices[-self.max_deltas :]
        record.updated = time.time()
        path = self.path(record.user_id)
        with atomic_open(path, private=True) as handle:
            json.dump(record.to_json(), handle, allow_nan=False)
        self._remove_stale_temp_files(path)
        return path

    @staticmethod
    def _remove_stale_temp_files(path: Path, older_than_s: float = 600.0) -> None:
        """Temp files a killed writer left beside this user's file (a live writer's is younger)."""
        now = time.time()
        for tmp in path.parent.glob(f".{path.name}.*.tmp"):
            with contextlib.suppress(OSError):
                if now - tmp.stat().st_mtime > older_than_s:
                    tmp.unlink()

    def _elsewhere(self, pattern: str) -> Iterator[UserRecord]:
        """Readable records with stored choices under the other artifacts of this root (bad files skipped,
        never touched)."""
        for path in self.root.glob(f"*/{pattern}"):
            if path.parent == self.folder:
                continue
            with contextlib.suppress(OSError, StoreError):
                record = parse_user_file(path.read_bytes(), str(path))
                if record.choices:
                    yield record

    def history_elsewhere(self, user_id: str) -> UserRecord | None:
        """The user's newest record with stored choices under another artifact of this store, or None."""
        name = user_file_name(check_user_id(user_id))
        found = [r for r in self._elsewhere(name) if r.user_id == user_id]
        return max(found, key=lambda r: r.updated) if found else None

    def others(self) -> list[str]:
        """User ids stored under other artifacts of this root with choices to refit from (for `users migrate`)."""
        return sorted({r.user_id for r in self._elsewhere("*.json")})

    def users(self) -> list[UserRecord]:
        """All readable users of this artifact (`scan` also says which files could not be read)."""
        return self.scan()[0]

    def scan(self) -> tuple[list[UserRecord], list[StoreError]]:
        """Readable users, and one error naming the file for each user file that could not be read."""
        records, problems = [], []
        if self.folder.is_dir():
            for path in sorted(self.folder.glob("*.json")):
                try:
                    if (record := self._read_path(path)) is not None:
                        records.append(record)
                except StoreError as exc:
                    problems.append(exc)
                except OSError as exc:
                    problems.append(StoreError(f"{path}: unreadable ({exc.strerror or exc})"))
        return records, problems

    def delete(self, user_id: str) -> bool:
        """Remove everything stored for the user, under this artifact and every other one in this store (their
        choices would otherwise bring them back on the next model); True if data was removed.

        The lock file is unlinked while held: a writer that was waiting on it sees that its lock is no
        longer the file at that path and takes the new one (`_acquire`), so the lock protocol stays sound."""
        name = user_file_name(check_user_id(user_id))
        paths = {self.path(user_id), *self.root.glob(f"*/{name}")}
        existed = False
        for path in sorted(paths):
            with file_lock(path.with_suffix(".lock")):
                existed |= path.exists()
                path.unlink(missing_ok=True)
                self._remove_stale_temp_files(path, older_than_s=0.0)
                with contextlib.suppress(OSError):  # Windows cannot unlink an open file: the empty lock stays
                    path.with_suffix(".lock").unlink()
        return existed
