"""Read and write preference pairs as JSON Lines: {"prompt", "chosen", "rejected", "user_id", "id"}."""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rfm.errors import DataError, UsageError
from rfm.fileio import atomic_open

CORE_FIELDS = ("prompt", "chosen", "rejected", "user_id", "id")
# A line longer than this is not a preference record (a 5 MB text is cut to 16k characters anyway).
MAX_LINE_BYTES = 32 << 20


@dataclass(frozen=True)
class Pair:
    """One preference: `chosen` was preferred over `rejected` for `prompt` by `user_id`."""

    prompt: str
    chosen: str
    rejected: str
    user_id: str | None = None
    id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_json(self) -> dict[str, Any]:
        record: dict[str, Any] = {"prompt": self.prompt, "chosen": self.chosen, "rejected": self.rejected}
        if self.user_id is not None:
            record["user_id"] = self.user_id
        if self.id is not None:
            record["id"] = self.id
        record.update(self.extra)
        return record


def no_preference_reason(chosen: str, rejected: str) -> str | None:
    """Why a pair carries no preference (empty or identical responses), or None if it does."""
    a, b = chosen.strip(), rejected.strip()
    if not a or not b:
        return "empty response"
    if a == b:
        return "identical responses"
    return None


def open_text_lines(path: str | os.PathLike) -> Iterator[tuple[int, bytes]]:
    """Yield (line number, raw bytes) of a text file ('-': stdin), gunzipping `.gz`; streams, never loads it whole."""
    if str(path) == "-":
        import sys

        yield from enumerate(sys.stdin.buffer, start=1)
        return
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            yield from enumerate(handle, start=1)
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot read: {exc}") from None


def parse_json_line(path: str | os.PathLike, lineno: int, raw: bytes) -> Any:
    """Decode one line as UTF-8 JSON, or raise `path:line: reason`."""
    if len(raw) > MAX_LINE_BYTES:
        raise DataError(f"{path}:{lineno}: line of {len(raw) >> 20} MB is longer than {MAX_LINE_BYTES >> 20} MB")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}:{lineno}: not UTF-8 (byte {exc.start})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{lineno}: bad JSON: {exc.msg} (column {exc.colno})") from None
    except RecursionError:
        raise DataError(f"{path}:{lineno}: JSON nested too deeply") from None


def check_texts(where: str, **texts: str) -> None:
    """Texts must be valid Unicode without NUL (a lone surrogate cannot be written as UTF-8)."""
    for key, value in texts.items():
        if "\x00" in value:
            raise DataError(f"{where}: field '{key}' contains a NUL character")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise DataError(f"{where}: field '{key}' holds invalid Unicode (a lone surrogate)") from None


def pair_from_record(record: Any, where: str) -> Pair:
    """Validate one decoded record against the contract; `where` prefixes the error (`path:line`)."""
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(record).__name__}")
    for key in ("prompt", "chosen", "rejected"):
        if key not in record:
            raise DataError(f"{where}: missing field '{key}'")
        if not isinstance(record[key], str):
            raise DataError(f"{where}: field '{key}' must be a string, got {type(record[key]).__name__}")
    reason = no_preference_reason(record["chosen"], record["rejected"])
    if reason:
        raise DataError(f"{where}: {reason}: a pair needs two different, non-empty responses")
    ids: dict[str, str | None] = {}
    for key in ("user_id", "id"):
        value = record.get(key)
        if value is None:
            ids[key] = None
        elif isinstance(value, str) and value.strip():
            ids[key] = value
        elif isinstance(value, int) and not isinstance(value, bool):
            ids[key] = str(value)
        else:
            raise DataError(f"{where}: field '{key}' must be a non-empty string (or absent)")
    check_texts(where, prompt=record["prompt"], chosen=record["chosen"], rejected=record["rejected"],
                **{k: v for k, v in ids.items() if v is not None})
    extra = {k: v for k, v in record.items() if k not in CORE_FIELDS}
    return Pair(record["prompt"], record["chosen"], record["rejected"], ids["user_id"], ids["id"], extra)


def read_pairs(path: str | os.PathLike, skip_blank: bool = True) -> Iterator[Pair]:
    """Stream validated pairs from a JSONL (or .jsonl.gz) file; a bad line raises `path:line: reason`."""
    for lineno, raw in open_text_lines(path):
        if skip_blank and not raw.strip():
            continue
        record = parse_json_line(path, lineno, raw)
        yield pair_from_record(record, f"{path}:{lineno}")


def load_pairs(path: str | os.PathLike) -> list[Pair]:
    """All pairs of a file; an empty file is an error."""
    pairs = list(read_pairs(path))
    if not pairs:
        raise DataError(f"{path}: no pairs in file")
    return pairs


def write_pairs(path: str | os.PathLike, pairs: Iterable[Pair | dict]) -> int:
    """Write pairs atomically as JSONL; returns how many were written."""
    count = 0
    with atomic_open(path, "w") as handle:
        for pair in pairs:
            record = pair.to_json() if isinstance(pair, Pair) else pair
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    return count


def index_texts(pairs: Iterable[Pair]) -> tuple[list[tuple[str, str]], list[int], list[int]]:
    """The distinct (prompt, response) texts of `pairs`, and each pair's chosen and rejected index.

    Each text is encoded once however many pairs share it: the one de-duplication rule of training,
    export validation and evaluation.
    """
    index: dict[tuple[str, str], int] = {}
    a, b = [], []
    for p in pairs:
        a.append(index.setdefault((p.prompt, p.chosen), len(index)))
        b.append(index.setdefault((p.prompt, p.rejected), len(index)))
    return list(index), a, b
