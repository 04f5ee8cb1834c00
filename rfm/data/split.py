"""Split preference data by user: training raters vs held-out users, plus a seen-user test split; optionally
by prompt too, so held-out users are tested on responses no training pair contains."""

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


ITEM_KINDS = ("prompts", "responses")


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


class _ItemSplit:
    """What is reserved for held-out users: a seeded share of the prompts (then the responses of every pair
    on the other prompts are the training side's) or of the responses."""

    def __init__(self, keys: set[bytes], frac: float, seed: int, by: str):
        ordered = sorted(keys)
        order = np.random.default_rng([seed, 1]).permutation(len(ordered))
        self.heldout = {ordered[i] for i in order[: round(frac * len(ordered))]}
        self.by = by
        self.training_responses: set[bytes] = set()

    @staticmethod
    def keys(pair, by: str) -> tuple[str, ...]:
        return (pair.prompt,) if by == "prompts" else (pair.chosen, pair.rejected)

    def note(self, pair) -> None:
        if self.by == "prompts" and _digest(pair.prompt) not in self.heldout:
            self.training_responses.update((_digest(pair.chosen), _digest(pair.rejected)))

    def why_not(self, pair, heldout_user: bool) -> str | None:
        """Why `pair` may not go to its user's side, or None."""
        if self.by == "responses":
            sides = {_digest(pair.chosen) in self.heldout, _digest(pair.rejected) in self.heldout}
            if len(sides) == 2:
                return "pair of a held-out and a training response"
            if sides.pop() == heldout_user:
                return None
            return "held-out user's pair of training responses" if heldout_user else \
                "training rater's pair of held-out responses"
        if not heldout_user:
            return "training rater's pair on a held-out prompt" if _digest(pair.prompt) in self.heldout else None
        if _digest(pair.prompt) not in self.heldout:
            return "held-out user's pair on a training prompt"
        if _digest(pair.chosen) in self.training_responses or _digest(pair.rejected) in self.training_responses:
            return "held-out user's pair re-using a response of a training prompt"
        return None


def split_by_user(
    src: str | os.PathLike,
    out_dir: str | os.PathLike,
    holdout_frac: float,
    seed: int = 0,
    min_pairs: int = 1,
    seen_frac: float = 0.2,
    item_holdout: float = 0.0,
    items: str = "prompts",
) -> SplitReport:
    """Stream `src`: count pairs per user, then write train / heldout / seen_test files.

    Users are disjoint between train(+seen_test) and heldout. Within each training rater, a
    `seen_frac` share of pairs (chosen by a per-user seeded draw) goes to seen_test.jsonl.
    With `item_holdout` > 0 that share of the prompts is reserved for held-out users: training raters
    keep only their pairs on the other prompts, held-out users only theirs on these prompts that share
    no response with any pair on the others (the rest is reported as dropped), so held-out users are
    scored on responses no training pair contains, as a newly generated candidate is. With `items`
    "responses" (data with one prompt, e.g. Jester's jokes) a share of the responses is reserved
    instead: a pair goes to the side that holds both its responses, pairs across are dropped. Users
    qualify by `min_pairs` of all their pairs.
    """
    if not 0.0 <= holdout_frac < 1.0:
        raise UsageError(f"must be in [0, 1), got {holdout_frac}", param="holdout_users")
    if not 0.0 <= seen_frac < 1.0:
        raise UsageError(f"must be in [0, 1), got {seen_frac}", param="seen_frac")
    if not 0.0 <= item_holdout < 1.0:
        raise UsageError(f"must be in [0, 1), got {item_holdout}", param="item_holdout")
    if items not in ITEM_KINDS:
        raise UsageError(f"must be one of {', '.join(ITEM_KINDS)}, got {items!r}", param="items")
    per_user: Counter = Counter()
    keys: set[bytes] = set()
    for pair in read_pairs(src):
        per_user[pair.user_id] += 1
        if item_holdout:
            keys.update(_digest(text) for text in _ItemSplit.keys(pair, items))
    item_split = _ItemSplit(keys, item_holdout, seed, items) if item_holdout else None
    if item_split is not None:
        if holdout_frac == 0:
            raise UsageError(f"needs held-out users (--holdout-users > 0) to test on the held-out {items}",
                             param="item_holdout")
        if not item_split.heldout or len(item_split.heldout) == len(keys):
            raise UsageError(f"{src} has {len(keys)} distinct {items}: too few to reserve {item_holdout:g} of "
                             f"them for held-out users" + (" (one prompt? try --items responses)"
                                                           if items == "prompts" else ""), param="item_holdout")
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
    kept = per_user
    if item_split is not None:  # a second pass: what training raters keep, and the responses of training prompts
        kept = Counter()
        for pair in read_pairs(src):
            item_split.note(pair)
            if pair.user_id in per_user and item_split.why_not(pair, heldout_user=False) is None:
                kept[pair.user_id] += 1
    seen_rows = {
        user: set(_user_rng(seed, user).permutation(kept[user])[: int(seen_frac * kept[user])].tolist())
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
            reason = item_split.why_not(pair, user in heldout) if item_split is not None else None
            if reason is not None:
                report.dropped[reason] += 1
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
