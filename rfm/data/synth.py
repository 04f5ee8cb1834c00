"""Synthetic raters over real responses (Barreto et al. 2025, section 5.1).

Each response gets a vector of documented, deterministic attributes, standardised over the corpus.
A rater's true reward is `r(y) = <w, z(y)>`. Scenario 1: every rater's w is scattered around one
shared direction (broad agreement). Scenario 2: two equal groups with opposing directions, so a
single reward model for everyone must fall to chance. Scenario 3 ("taste"): each rater has one
taste people really differ on and a reader can check in the text (TASTES: detailed or brief, lists
or prose, casual or formal, hedged or direct), plus a little of everything else; tastes come in
opposing couples, so one reward for everyone serves nobody well. A rater prefers y over y' with Bradley-Terry
probability sigmoid((r(y) - r(y')) / temperature), or deterministically with `deterministic=True`.
The sidecar JSON holds the attribute definitions, the standardisation and every rater's weights,
so evaluation can compute the true reward of any response.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rfm.data.jsonl import Pair, load_pairs, write_pairs
from rfm.errors import DataError, UsageError
from rfm.fileio import atomic_open

_WORD = re.compile(r"\S+")
_LIST_LINE = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+", re.MULTILINE)
_CONTRACTION = re.compile(r"\b\w+(?:n't|'m|'re|'ll|'ve|'d)\b", re.IGNORECASE)
_HEDGES = re.compile(
    r"\b(?:maybe|might|perhaps|possibly|probably|likely|could|seems?|generally|typically|usually|i think|i believe)\b",
    re.IGNORECASE,
)
_DIGIT_TOKEN = re.compile(r"\S*\d\S*")
_CODE = re.compile(r"```|`[^`]+`|\b(?:def|return|import|function|class)\b|[{};]\s*$", re.MULTILINE)

ATTRIBUTES: dict[str, str] = {
    "length": "log(1 + number of whitespace-separated words)",
    "structure": "share of non-empty lines that are list items (-, *, •, or '1.' / '1)')",
    "informality": "(contractions + exclamation marks) per 10 words",
    "hedging": "hedge words (maybe, might, perhaps, possibly, probably, likely, could, seem(s), generally, "
    "typically, usually, 'I think', 'I believe') per 10 words",
    "technical": "share of words containing a digit, plus 1 if the text has code markers (``` or `x`, def/return/...)",
    "questions": "question marks per sentence-ending mark (. ! ?)",
}
ATTRIBUTE_NAMES = tuple(ATTRIBUTES)

# Scenario 3: a taste is an attribute and a sign (name -> (attribute, +1 likes more / -1 likes less)).
TASTES: dict[str, tuple[str, float]] = {
    "detailed": ("length", 1.0), "brief": ("length", -1.0),
    "lists": ("structure", 1.0), "prose": ("structure", -1.0),
    "casual": ("informality", 1.0), "formal": ("informality", -1.0),
    "hedged": ("hedging", 1.0), "direct": ("hedging", -1.0),
}
TASTE_NAMES = tuple(TASTES)
SCENARIOS = {1: "broad agreement", 2: "two opposing groups", 3: "taste"}


def raw_attributes(text: str) -> np.ndarray:
    """The unstandardised attribute vector of one response, in ATTRIBUTE_NAMES order."""
    words = _WORD.findall(text)
    n_words = max(len(words), 1)
    lines = [ln for ln in text.splitlines() if ln.strip()]
    enders = text.count(".") + text.count("!") + text.count("?")
    return np.array(
        [
            math.log1p(len(words)),
            len(_LIST_LINE.findall(text)) / max(len(lines), 1),
            10.0 * (len(_CONTRACTION.findall(text)) + text.count("!")) / n_words,
            10.0 * len(_HEDGES.findall(text)) / n_words,
            len(_DIGIT_TOKEN.findall(text)) / n_words + (1.0 if _CODE.search(text) else 0.0),
            text.count("?") / max(enders, 1),
        ],
        dtype=np.float64,
    )


@dataclass
class SyntheticRaters:
    """Attribute standardisation and each rater's true weights: enough to score any response."""

    scenario: int
    mean: np.ndarray
    std: np.ndarray
    weights: dict[str, np.ndarray]
    groups: dict[str, int]
    temperature: float
    deterministic: bool

    def attributes(self, texts: Sequence[str]) -> np.ndarray:
        raw = np.stack([raw_attributes(t) for t in texts])
        return (raw - self.mean) / self.std

    def taste(self, user: str) -> str | None:
        """Scenario 3: the rater's taste name (e.g. 'brief'); None in the other scenarios."""
        return TASTE_NAMES[self.groups[user]] if self.scenario == 3 else None

    def rewards(self, user: str, texts: Sequence[str]) -> np.ndarray:
        """True rewards of `texts` for rater `user`."""
        return self.attributes(texts) @ self.weights[user]

    def to_json(self) -> dict:
        return {
            "scenario": self.scenario,
            "attributes": ATTRIBUTES,
            "attribute_order": list(ATTRIBUTE_NAMES),
            "standardisation": {"mean": self.mean.tolist(), "std": self.std.tolist()},
            "temperature": self.temperature,
            "deterministic": self.deterministic,
            "raters": {u: {"weights": w.tolist(), "group": self.groups[u],
                           **({"taste": TASTE_NAMES[self.groups[u]]} if self.scenario == 3 else {})}
                       for u, w in self.weights.items()},
            **({"tastes": {name: {"attribute": a, "sign": sg} for name, (a, sg) in TASTES.items()}}
               if self.scenario == 3 else {}),
        }

    @classmethod
    def load(cls, path: str | os.PathLike) -> SyntheticRaters:
        try:
            data = json.loads(Path(path).read_text())
            if data["attribute_order"] != list(ATTRIBUTE_NAMES):
                raise DataError(f"{path}: attributes differ from this version of rfm")
            return cls(
                scenario=int(data["scenario"]),
                mean=np.array(data["standardisation"]["mean"]),
                std=np.array(data["standardisation"]["std"]),
                weights={u: np.array(r["weights"]) for u, r in data["raters"].items()},
                groups={u: int(r["group"]) for u, r in data["raters"].items()},
                temperature=float(data["temperature"]),
                deterministic=bool(data["deterministic"]),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DataError(f"{path}: not a synthetic-rater sidecar ({exc})") from None


def sidecar_path(out: str | os.PathLike) -> Path:
    """Where the sidecar of a synthetic data file lives: OUT.jsonl -> OUT.raters.json."""
    out = Path(out)
    stem = out.name[: -len(".jsonl")] if out.name.endswith(".jsonl") else out.name
    return out.with_name(stem + ".raters.json")


def make_raters(scenario: int, n_raters: int, rng: np.random.Generator, spread: float) -> tuple[dict, dict]:
    """Rater weights: Scenario 1 around one direction, 2 two opposing groups, 3 one taste each
    (rater i has TASTE_NAMES[i % 8]; its group is that taste's index)."""
    k = len(ATTRIBUTE_NAMES)
    shared = rng.normal(size=k)
    shared /= np.linalg.norm(shared)
    weights, groups = {}, {}
    for i in range(n_raters):
        if scenario == 3:
            group = i % len(TASTE_NAMES)
            attribute, sign = TASTES[TASTE_NAMES[group]]
            direction = sign * np.eye(k)[ATTRIBUTE_NAMES.index(attribute)]
        else:
            group = 0 if scenario == 1 else i % 2
            direction = (1.0 if group == 0 else -1.0) * shared
        w = direction + spread * rng.normal(size=k) / math.sqrt(k)
        user = f"s{scenario}-r{i:03d}"
        weights[user] = w / np.linalg.norm(w)
        groups[user] = group
    return weights, groups


def synthesise(
    src: str | os.PathLike,
    out: str | os.PathLike,
    scenario: int,
    n_raters: int,
    seed: int = 0,
    pairs_per_rater: int = 100,
    temperature: float = 0.1,
    deterministic: bool = False,
    spread: float | None = None,
) -> SyntheticRaters:
    """Write OUT.jsonl (rater-labelled pairs over SRC's real responses) and its sidecar."""
    if scenario not in SCENARIOS:
        raise UsageError(f"must be 1, 2 or 3, got {scenario}", param="scenario")
    if n_raters < (2 if scenario >= 2 else 1):
        raise UsageError("must be at least 1 (2 for scenarios 2 and 3)", param="raters")
    if not temperature > 0 or not math.isfinite(temperature):
        raise UsageError("must be > 0", param="temperature")
    source = load_pairs(src)
    texts = sorted({t for p in source for t in (p.chosen, p.rejected)})
    raw = np.stack([raw_attributes(t) for t in texts])
    std = raw.std(axis=0)
    std[std == 0] = 1.0
    rng = np.random.default_rng(seed)
    spread = {1: 0.5, 2: 0.3, 3: 0.3}[scenario] if spread is None else spread
    weights, groups = make_raters(scenario, n_raters, rng, spread)
    raters = SyntheticRaters(scenario, raw.mean(axis=0), std, weights, groups, temperature, deterministic)
    z = {t: v for t, v in zip(texts, (raw - raters.mean) / raters.std, strict=True)}
    n_take = min(pairs_per_rater, len(source))
    records = []
    for user, w in weights.items():
        for idx in sorted(rng.choice(len(source), size=n_take, replace=False).tolist()):
            pair = source[idx]
            a, b = (pair.chosen, pair.rejected) if rng.random() < 0.5 else (pair.rejected, pair.chosen)
            margin = float((z[a] - z[b]) @ w)
            p_a = 1.0 / (1.0 + math.exp(-margin / temperature))
            draw = rng.random()
            a_wins = margin > 0 or (margin == 0 and draw < 0.5) if deterministic else draw < p_a
            chosen, rejected = (a, b) if a_wins else (b, a)
            records.append(Pair(pair.prompt, chosen, rejected, user, f"{pair.id or idx}:{user}",
                                {"source_pair": idx, "true_margin": round(abs(margin), 6)}))
    write_pairs(out, records)
    with atomic_open(sidecar_path(out)) as handle:
        json.dump(raters.to_json(), handle, indent=1)
    return raters
