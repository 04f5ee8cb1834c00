"""Pooled-embedding cache for `--tune head`: each distinct (prompt, response) is encoded once, ever.

Keyed by the backbone's weights fingerprint, max_length, truncation rule and pooling; one SQLite file
per key under the cache dir (stdlib, atomic commits, safe to interrupt).
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from rfm.paths import cache_dir


def text_key(prompt: str, response: str) -> bytes:
    return hashlib.sha256(prompt.encode() + b"\x00\x01" + response.encode()).digest()


class EmbeddingCache:
    """A persistent map from text-pair hash to a float32 vector."""

    def __init__(self, key: str, root: Path | None = None):
        folder = (root or cache_dir()) / "embeddings"
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"{key}.sqlite"
        self._db = sqlite3.connect(self.path)
        self._db.execute("CREATE TABLE IF NOT EXISTS emb (k BLOB PRIMARY KEY, v BLOB NOT NULL)")

    def lookup(self, keys: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        found: dict[bytes, np.ndarray] = {}
        for start in range(0, len(keys), 500):
            chunk = list(keys[start : start + 500])
            marks = ",".join("?" * len(chunk))
            for k, v in self._db.execute(f"SELECT k, v FROM emb WHERE k IN ({marks})", chunk):
                found[bytes(k)] = np.frombuffer(v, dtype=np.float32)
        return found

    def store(self, items: dict[bytes, np.ndarray]) -> None:
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO emb (k, v) VALUES (?, ?)",
                                 [(k, np.asarray(v, np.float32).tobytes()) for k, v in items.items()])

    def close(self) -> None:
        self._db.close()


def embed_texts(
    pairs: Sequence[tuple[str, str]],
    encode_batch: Callable[[list[tuple[str, str]]], np.ndarray],
    cache: EmbeddingCache | None,
    batch_size: int = 64,
    progress: bool = True,
) -> tuple[np.ndarray, int]:
    """Embeddings of distinct (prompt, response) pairs, computing only cache misses.

    Returns the (n, dim) matrix in input order and how many pairs were encoded now.
    """
    from tqdm.auto import tqdm

    keys = [text_key(p, r) for p, r in pairs]
    found = cache.lookup(keys) if cache is not None else {}
    missing = [i for i, k in enumerate(keys) if k not in found]
    # Longest first within batches keeps padding low (and shows the slowest part early).
    missing.sort(key=lambda i: -(len(pairs[i][0]) + len(pairs[i][1])))
    with tqdm(total=len(missing), desc="encoding texts", unit="text", disable=not progress or not missing) as bar:
        for start in range(0, len(missing), batch_size):
            idx = missing[start : start + batch_size]
            vectors = encode_batch([pairs[i] for i in idx])
            new = {keys[i]: v for i, v in zip(idx, vectors, strict=True)}
            found.update(new)
            if cache is not None:
                cache.store(new)
            bar.update(len(idx))
    matrix = np.stack([found[k] for k in keys]).astype(np.float32) if keys else np.zeros((0, 0), np.float32)
    return matrix, len(missing)
