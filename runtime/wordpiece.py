"""A cache-based fast path for BERT-style WordPiece tokenizers (BertNormalizer, BertPreTokenizer).

BERT splits text on whitespace, then each chunk into words (runs of non-punctuation, single
punctuation characters), then each word into WordPiece ids: a chunk's ids never depend on its
neighbours. For ASCII text without control characters the normaliser only lowercases, so the ids are
`chain(cache[chunk] for chunk in text.lower().split())`: C-level splitting and dictionary lookups,
~3-5x faster than the tokenizers library's per-text pipeline (which also builds offsets, strings and
alignments rfm never reads). Other text is first mapped character by character (`str.translate`)
through what the library's own normaliser and pre-tokenizer make of each character, then split into
words. The caches start with the vocabulary's whole words; anything else is split once and remembered
(bounded). Texts with a special token written out, or characters whose normal form keeps a combining
mark, return None and the caller tokenises them with the library; `WordPieceFastPath.for_tokenizer`
checks on probe texts that both paths agree.
"""

from __future__ import annotations

import itertools
import json
import re
import unicodedata

from tokenizers import Tokenizer

# Entries a cache holds before it starts over: ~190 bytes each measured, so the chunk and word caches
# stay under ~40 MB together and the character table under ~10 MB, whatever text arrives.
MAX_CACHED_CHUNKS = 100_000
MAX_CACHED_CHARS = 50_000

# Texts the same probes must tokenise identically both ways before the fast path is used.
PROBES = ("Hello, World! It's 3.14 -- isn't it?", "  tabs\tand\nnew\r\nlines  ", "", "unaffable xylophonists",
          "a" * 101 + " ok", "don't [SEP] me", "naïve café – “quoted” … £5\xa0ok", "e-mail: a@b.c (50%) #1 ~x^y`z|{}[]<>",
          "e.g. U.S.A.", "日本語のテキスト", "ΣΟΦΟΣ σοφός İstanbul", "ctrl\x01\x0bchars\u200b\u2028end", "ﬁne ½ Ⅻ")

# Control characters other than tab, newline and carriage return: BERT's normaliser deletes them.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]").search

# What a character maps to when only the library can place it (its normal form keeps combining marks,
# whose order NFD may change with the neighbours): a NUL, which BERT's normaliser deletes from any text.
_LIBRARY_ONLY = "\x00"


class _Memo(dict):
    """A dict that computes a missing entry once, on first lookup, and starts over from `seed` when full."""

    limit_name = "MAX_CACHED_CHUNKS"  # the module constant bounding it (read at each miss, so tests can lower it)

    def __init__(self, seed: dict):
        super().__init__()
        self.seed = seed
        self.forget()

    def forget(self) -> None:
        """Back to the seed entries only."""
        self.clear()
        self.update(self.seed)

    def __missing__(self, key):
        if len(self) >= globals()[self.limit_name]:
            self.forget()
        value = self[key] = self.compute(key)
        return value

    def compute(self, key):
        raise NotImplementedError


class _WordPieces(_Memo):
    """word -> its WordPiece ids; starts with the vocabulary's whole words."""

    def __init__(self, vocab: dict[str, int], unk_id: int, prefix: str, max_chars: int):
        self.vocab, self.unk, self.prefix, self.max_chars = vocab, (unk_id,), prefix, max_chars
        super().__init__({w: (i,) for w, i in vocab.items() if len(w) <= max_chars and not w.startswith(prefix)})

    def compute(self, word: str) -> tuple[int, ...]:
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


class _ChunkCache(_Memo):
    """ASCII whitespace-separated chunk -> its ids: its words (letter/digit runs, single punctuation
    characters) through the WordPiece cache."""

    _words = staticmethod(re.compile(r"[A-Za-z0-9]+|[^\sA-Za-z0-9]").findall)

    def __init__(self, pieces: _WordPieces):
        self.pieces = pieces
        # Vocabulary entries that are one ASCII word of the pre-tokenizer are chunks whose ids are their own id.
        super().__init__({w: ids for w, ids in pieces.seed.items() if w.isascii() and self._words(w) == [w]})

    def compute(self, chunk: str) -> tuple[int, ...]:
        words = [chunk] if chunk.isalnum() else self._words(chunk)
        return tuple(itertools.chain.from_iterable(map(self.pieces.__getitem__, words)))


class _CharTable(_Memo):
    """code point -> what BERT's normaliser makes of the character, with a space either side of each
    pre-tokenizer word boundary it makes, asked of the library once per character (for `str.translate`).

    BertNormalizer works character by character (cleaning, CJK spacing, NFD + accent stripping,
    lowercasing) except that NFD orders combining marks across neighbours: a character whose normal
    form keeps one maps to `_LIBRARY_ONLY`."""

    limit_name = "MAX_CACHED_CHARS"  # bounds text written to fill memory with rare characters

    def __init__(self, tokenizer: Tokenizer):
        self.normalize = tokenizer.normalizer.normalize_str
        self.pre_tokenize = tokenizer.pre_tokenizer.pre_tokenize_str
        super().__init__({})

    def compute(self, code: int) -> str:
        normal = self.normalize(chr(code))
        if any(unicodedata.combining(c) for c in normal):
            return _LIBRARY_ONLY
        # "q" on either side shows whether the character splits a word (punctuation, space) or not
        return " ".join(word for word, _ in self.pre_tokenize(f"q{normal}q"))[1:-1]


class WordPieceFastPath:
    """Token ids (no special tokens) of texts for one BERT-style WordPiece tokenizer, from caches."""

    def __init__(self, tokenizer: Tokenizer, config: dict):
        model, normalizer = config["model"], config["normalizer"]
        self._lower = bool(normalizer.get("lowercase", True))
        added = [t["content"] for t in config.get("added_tokens") or [] if t["content"]]
        # A special token written out in the text is the library's to match (it does so before normalising).
        self._added_leads = frozenset(c for t in added for c in (t[0].lower(), t[0].upper()))
        self._added = re.compile("|".join(map(re.escape, added)), re.IGNORECASE).search if added else None
        self._pieces = _WordPieces(model["vocab"], model["vocab"][model["unk_token"]],
                                   model.get("continuing_subword_prefix", "##"),
                                   int(model.get("max_input_chars_per_word", 100)))
        self._chunks = _ChunkCache(self._pieces)
        self._chars = _CharTable(tokenizer)

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
        plain = Tokenizer.from_str(tokenizer.to_str())
        plain.no_truncation()
        plain.no_padding()
        fast = cls(plain, config)
        for text in PROBES:
            ids = fast.ids(text)
            if ids is not None and ids != plain.encode(text, add_special_tokens=False).ids:
                return None
        return fast

    def ids(self, text: str, limit: int = -1) -> list[int] | None:
        """The text's token ids without special tokens (at least its first `limit` ones, if limit >= 0), or
        None when only the library can tokenise it."""
        if self._has_added(text):
            return None
        if text.isascii() and not _CONTROL(text):  # the common case: lowercasing is all the normaliser does
            words, cache = (text.lower() if self._lower else text).split(None, limit), self._chunks
        else:
            normal = text.translate(self._chars)
            if _LIBRARY_ONLY in normal:
                return None
            words, cache = normal.split(None, limit), self._pieces
        lookup, chain, islice = cache.__getitem__, itertools.chain.from_iterable, itertools.islice
        if limit < 0 or limit >= len(words):
            return list(chain(map(lookup, words)))
        # Every chunk or word gives at least one id, so `limit` of them hold the first `limit` ids. English
        # gives 1.1-1.3 ids a chunk: start from 4/5 of that, then `limit - len(ids)` more complete them
        # (never more than `limit` chunks looked at; often a fifth fewer).
        start = limit * 4 // 5
        ids = list(chain(map(lookup, islice(words, start))))
        if len(ids) < limit:
            ids += chain(map(lookup, islice(words, start, start + limit - len(ids))))
        return ids

    def forget(self) -> None:
        """Drop every remembered chunk, word and character (the vocabulary's whole words stay): a cold
        start, for benchmarks."""
        self._chunks.forget()
        self._pieces.forget()
        self._chars.forget()

    def _has_added(self, text: str) -> bool:
        return self._added is not None and any(c in text for c in self._added_leads) and self._added(text) is not None
