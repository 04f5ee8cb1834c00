"""A chunk-cache fast path for BERT-style WordPiece tokenizers on plain ASCII text.

A BERT tokenizer splits text on whitespace, then each chunk into words (runs of letters and digits,
single punctuation characters), then each word into WordPiece ids; a chunk's ids never depend on its
neighbours. For ASCII text without control characters or special-token strings, normalisation is at
most a `str.lower()`, so the ids are `chain(cache[chunk] for chunk in text.lower().split())`: C-level
splitting and dictionary lookups, ~3x faster than the tokenizers library's per-text pipeline (which
also builds offsets, strings and alignments we never read). The cache starts with the vocabulary's
whole words; any other chunk is split once and remembered (bounded). Every other text (non-ASCII,
control characters, special tokens written out) returns None and the caller tokenises it with the
library; `WordPieceFastPath.for_tokenizer` checks on probe texts that both paths agree.
"""

from __future__ import annotations

import itertools
import json
import re

from tokenizers import Tokenizer

# Distinct whitespace-separated chunks remembered (~20 MB) before the cache starts over.
MAX_CACHED_CHUNKS = 200_000

# Texts the same probes must tokenise identically both ways before the fast path is used.
PROBES = ("Hello, World! It's 3.14 -- isn't it?", "  tabs\tand\nnew\r\nlines  ", "", "unaffable xylophonists",
          "a" * 101 + " ok", "don't [SEP] me", "naïve café", "e-mail: a@b.c (50%) #1 ~x^y`z|{}[]<>", "e.g. U.S.A.")

# Control characters other than tab, newline and carriage return: BERT's normaliser deletes them.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]").search


class _ChunkCache(dict):
    """whitespace-separated chunk -> its WordPiece ids; a chunk not yet seen is split once, on first lookup.

    BERT's pre-tokenizer splits on whitespace first, so a chunk's ids do not depend on its neighbours."""

    def __init__(self, vocab: dict[str, int], unk_id: int, prefix: str, max_chars: int):
        super().__init__()
        self.vocab, self.unk, self.prefix, self.max_chars = vocab, (unk_id,), prefix, max_chars
        self.words = re.compile(r"[A-Za-z0-9]+|[^\sA-Za-z0-9]").findall
        # Vocabulary entries that are one word of the pre-tokenizer are chunks whose ids are their own id.
        self.whole_words = {w: (i,) for w, i in vocab.items() if len(w) <= max_chars and self.words(w) == [w]}
        self.update(self.whole_words)

    def forget(self) -> None:
        """Back to the vocabulary's whole words only."""
        self.clear()
        self.update(self.whole_words)

    def __missing__(self, chunk: str) -> tuple[int, ...]:
        if len(self) >= MAX_CACHED_CHUNKS:
            self.forget()
        words = [chunk] if chunk.isalnum() else self.words(chunk)
        ids = tuple(itertools.chain.from_iterable(map(self.split, words)))
        self[chunk] = ids
        return ids

    def split(self, word: str) -> tuple[int, ...]:
        """Greedy longest-match-first WordPiece (what the tokenizers library's WordPiece model does)."""
        if len(word) > self.max_chars:
            return self.unk
        pieces, start, end_of_word = [], 0, len(word)
        while start < end_of_word:
            end, found = end_of_word, None
            while start < end:
                found = self.vocab.get(word[start:end] if start == 0 else self.prefix + word[start:end])
                if found is not None:
                    break
                end -= 1
            if found is None:
                return self.unk
            pieces.append(found)
            start = end
        return tuple(pieces)


class WordPieceFastPath:
    """Token ids (no special tokens) of plain-ASCII texts for one BERT-style WordPiece tokenizer."""

    def __init__(self, config: dict):
        model, normalizer = config["model"], config["normalizer"]
        self._lower = bool(normalizer.get("lowercase", True))
        added = [t["content"] for t in config.get("added_tokens") or [] if t["content"]]
        # A special token written out in the text is the library's to match (it does so before normalising).
        self._added_leads = frozenset(c for t in added for c in (t[0].lower(), t[0].upper()))
        self._added = re.compile("|".join(map(re.escape, added)), re.IGNORECASE).search if added else None
        self._cache = _ChunkCache(model["vocab"], model["vocab"][model["unk_token"]],
                                  model.get("continuing_subword_prefix", "##"), int(model.get("max_input_chars_per_word", 100)))

    @classmethod
    def for_tokenizer(cls, tokenizer: Tokenizer) -> WordPieceFastPath | None:
        """The fast path for a BertNormalizer + BertPreTokenizer + WordPiece tokenizer that agrees with the
        library on the probe texts; None for any other tokenizer (BPE, SentencePiece, custom pipelines)."""
        config = json.loads(tokenizer.to_str())
        normalizer, pre, model = config.get("normalizer") or {}, config.get("pre_tokenizer") or {}, config.get("model") or {}
        if (normalizer.get("type"), pre.get("type"), model.get("type")) != ("BertNormalizer", "BertPreTokenizer", "WordPiece"):
            return None
        if model.get("unk_token") not in model.get("vocab", {}):
            return None
        if any(any(c.isspace() for c in t["content"]) for t in config.get("added_tokens") or []):
            return None  # a special token spanning whitespace would make chunks depend on their neighbours
        fast = cls(config)
        plain = Tokenizer.from_str(tokenizer.to_str())
        plain.no_truncation()
        plain.no_padding()
        for text in PROBES:
            ids = fast.ids(text)
            if ids is not None and ids != plain.encode(text, add_special_tokens=False).ids:
                return None
        return fast

    def ids(self, text: str, limit: int = -1) -> list[int] | None:
        """The text's token ids without special tokens (at least its first `limit` ones, if limit >= 0), or
        None when only the library can tokenise it."""
        if not text.isascii() or _CONTROL(text) or self._has_added(text):
            return None
        # Every chunk gives at least one id, so the first `limit` chunks hold the first `limit` ids.
        chunks = (text.lower() if self._lower else text).split(None, limit)
        if 0 <= limit < len(chunks):
            del chunks[limit:]
        return list(itertools.chain.from_iterable(map(self._cache.__getitem__, chunks)))

    def forget(self) -> None:
        """Drop every remembered chunk (the vocabulary's whole words stay): a cold start, for benchmarks."""
        self._cache.forget()

    def _has_added(self, text: str) -> bool:
        return self._added is not None and any(c in text for c in self._added_leads) and self._added(text) is not None
