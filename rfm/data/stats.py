"""Summary statistics of a preference file: pairs, users, pairs per user, text lengths."""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Callable

import numpy as np

from rfm.data.jsonl import read_pairs


def _describe(values: list[int]) -> dict[str, float]:
    if not values:
        return {"min": 0, "median": 0, "p90": 0, "max": 0}
    arr = np.asarray(values)
    return {"min": int(arr.min()), "median": float(np.median(arr)), "p90": float(np.percentile(arr, 90)),
            "max": int(arr.max())}


def word_count(text: str) -> int:
    return len(text.split())


def data_stats(path: str | os.PathLike, count_tokens: Callable[[str], int] = word_count, unit: str = "words") -> dict:
    """Stream `path` once and describe it."""
    per_user: Counter = Counter()
    prompt_len: list[int] = []
    response_len: list[int] = []
    pairs = 0
    prompts: set[bytes] = set()
    for pair in read_pairs(path):
        pairs += 1
        per_user[pair.user_id] += 1
        key = hashlib.sha256(pair.prompt.encode("utf-8", "surrogatepass")).digest()  # stable, and no text kept
        if key not in prompts:
            prompts.add(key)
            prompt_len.append(count_tokens(pair.prompt))
        response_len.extend((count_tokens(pair.chosen), count_tokens(pair.rejected)))
    anonymous = per_user.pop(None, 0)
    return {
        "file": str(path),
        "pairs": pairs,
        "users": len(per_user),
        "pairs_without_user": anonymous,
        "pairs_per_user": _describe(list(per_user.values())),
        "distinct_prompts": len(prompts),
        "length_unit": unit,
        "prompt_length": _describe(prompt_len),
        "response_length": _describe(response_len),
    }
