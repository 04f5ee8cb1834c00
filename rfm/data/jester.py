"""Jester joke ratings (real people, -10..+10) -> rater-identified preference pairs.

For each user, two jokes whose ratings differ by at least `min_gap` become a pair (the higher-rated
one chosen), under the prompt "Tell me a joke.". A user with more such pairs than `max_pairs` keeps a
seeded random subset, drawn from a generator keyed by (seed, user id), so the output is the same on
every machine and does not depend on the order of the rating rows.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import os
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from rfm.data.convert import ConvertReport
from rfm.data.jsonl import Pair
from rfm.errors import DataError, UsageError

PROMPT = "Tell me a joke."


def _sources(src: str | os.PathLike) -> tuple[Path, Path]:
    """(ratings.csv, jokes.csv) from the jester folder or its ratings.csv (jokes.csv beside it)."""
    path = Path(src)
    ratings = path / "ratings.csv" if path.is_dir() else path
    jokes = ratings.with_name("jokes.csv")
    for needed in (ratings, jokes):
        if not needed.is_file():
            raise UsageError(f"{needed}: not found (--format jester reads the jester folder: ratings.csv + jokes.csv)")
    return ratings, jokes


def _rows(path: Path, columns: tuple[str, ...]) -> Iterator[tuple[str, dict]]:
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None or not set(columns) <= set(reader.fieldnames):
                raise DataError(f"{path}:1: expected the columns {', '.join(columns)}")
            for row in reader:
                yield f"{path}:{reader.line_num}", row
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason})") from None


def _number(value: str | None, where: str, name: str, kind=float):
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise DataError(f"{where}: '{name}' is not a number: {value!r}") from None


def jester_pairs(src: str | os.PathLike, report: ConvertReport, min_gap: float = 3.0, max_pairs: int | None = 100,
                 seed: int = 0) -> Iterator[Pair]:
    """Stream preference pairs from Jester ratings, user by user (users in sorted id order)."""
    if not min_gap > 0:
        raise UsageError("must be > 0", param="min_gap")
    if max_pairs is not None and max_pairs < 1:
        raise UsageError("must be >= 1", param="max_pairs")
    ratings_path, jokes_path = _sources(src)
    jokes: dict[int, str] = {}
    for where, row in _rows(jokes_path, ("joke_id", "text")):
        text = (row["text"] or "").strip()
        if not text:
            raise DataError(f"{where}: empty joke text")
        jokes[_number(row["joke_id"], where, "joke_id", int)] = text
    by_user: dict[str, dict[int, float]] = defaultdict(dict)
    for where, row in _rows(ratings_path, ("user_id", "joke_id", "rating")):
        report.rows += 1
        joke = _number(row["joke_id"], where, "joke_id", int)
        rating = _number(row["rating"], where, "rating")
        if not np.isfinite(rating):
            raise DataError(f"{where}: 'rating' is not finite")
        if joke not in jokes:
            raise DataError(f"{where}: joke {joke} is not in {jokes_path}")
        user = (row["user_id"] or "").strip()
        if not user:
            raise DataError(f"{where}: empty user_id")
        by_user[user][joke] = rating  # a repeated rating replaces the earlier one
    for user in sorted(by_user):
        rated = sorted(by_user[user].items())
        candidates = [(a, b) for (a, ra), (b, rb) in itertools.combinations(rated, 2) if abs(ra - rb) >= min_gap]
        if not candidates:
            report.dropped["users without a pair at --min-gap"] += 1
            continue
        if max_pairs is not None and len(candidates) > max_pairs:
            digest = hashlib.sha256(f"{seed}|{user}".encode()).digest()
            rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
            candidates = [candidates[i] for i in sorted(rng.choice(len(candidates), max_pairs, replace=False))]
        for a, b in candidates:
            ra, rb = by_user[user][a], by_user[user][b]
            (win, r_win), (lose, r_lose) = ((a, ra), (b, rb)) if ra > rb else ((b, rb), (a, ra))
            report.pairs += 1
            yield Pair(PROMPT, jokes[win], jokes[lose], f"jester-{user}", f"jester:{user}:{win}>{lose}",
                       {"jokes": [win, lose], "ratings": [r_win, r_lose]})
