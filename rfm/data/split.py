"""Split preference data by user: training raters vs held-out users, plus a seen-user test split."""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rfm.data.jsonl import read_pairs
from rfm.errors import DataError, UsageError
from rfm.fileio import atomic_open

SPLIT_FILES = ("train.jsonl", "heldout.jsonl", "seen_test.jsonl")


@dataclass
class SplitReport:
    """Who went where, and what was dropped and why."""

    train_users: list[str] = field(default_factory=list)
    heldout_users: list[str] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)
    dropped: Counter = field(default_factory=Counter)
    dropped_users: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "train_users": len(self.train_users),
            "heldout_users": len(self.heldout_users),
            "pairs": dict(self.counts),
            "dropped": dict(self.dropped),
            "dropped_users": self.dropped_users,
            "heldout_user_ids": self.heldout_users,
        }


def _user_rng(seed: int, user: str) -> np.random.Generator:
    digest = hashlib.sha256(f"{seed}\x00{user}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def split_by_user(
    src: str | os.PathLike,
    out_dir: str | os.PathLike,
    holdout_frac: float,
    seed: int = 0,
    min_pairs: int = 1,
    seen_frac: float = 0.2,
) -> SplitReport:
    """Stream `src` twice: count pairs per user, then write train / heldout / seen_test files.

    Users are disjoint between train(+seen_test) and heldout. Within each training rater, a
    `seen_frac` share of pairs (chosen by a per-user seeded draw) goes to seen_test.jsonl.
    """
    if not 0.0 <= holdout_frac < 1.0:
        raise UsageError(f"must be in [0, 1), got {holdout_frac}", param="holdout_users")
    if not 0.0 <= seen_frac < 1.0:
        raise UsageError(f"must be in [0, 1), got {seen_frac}", param="seen_frac")
    per_user: Counter = Counter()
    for pair in read_pairs(src):
        per_user[pair.user_id] += 1
    report = SplitReport()
    if None in per_user:
        report.dropped["no user_id"] = per_user.pop(None)
    eligible = sorted(u for u, n in per_user.items() if n >= min_pairs)
    for user in sorted(set(per_user) - set(eligible)):
        report.dropped[f"user with < {min_pairs} pairs"] += per_user[user]
        report.dropped_users.append(user)
    if not eligible:
        raise DataError(f"{src}: no users with at least {min_pairs} pairs (and a user_id)")
    order = np.random.default_rng(seed).permutation(len(eligible))
    n_holdout = round(holdout_frac * len(eligible))
    if holdout_frac > 0:
        n_holdout = min(max(n_holdout, 1), len(eligible) - 1)
    heldout = {eligible[i] for i in order[:n_holdout]}
    report.heldout_users = sorted(heldout)
    report.train_users = sorted(set(eligible) - heldout)
    seen_rows = {
        user: set(_user_rng(seed, user).permutation(per_user[user])[: int(seen_frac * per_user[user])].tolist())
        for user in report.train_users
    }
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    seen_index: Counter = Counter()
    with (
        atomic_open(out_dir / "train.jsonl") as train_f,
        atomic_open(out_dir / "heldout.jsonl") as heldout_f,
        atomic_open(out_dir / "seen_test.jsonl") as seen_f,
    ):
        for pair in read_pairs(src):
            user = pair.user_id
            if user is None or user not in per_user or per_user[user] < min_pairs:
                continue
            line = json.dumps(pair.to_json(), ensure_ascii=False) + "\n"
            if user in heldout:
                heldout_f.write(line)
                report.counts["heldout"] += 1
            else:
                k = seen_index[user]
                seen_index[user] += 1
                target, name = (seen_f, "seen_test") if k in seen_rows[user] else (train_f, "train")
                target.write(line)
                report.counts[name] += 1
    return report
