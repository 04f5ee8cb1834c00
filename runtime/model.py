"""The app-facing API: load an artifact once, then score, rerank, take feedback, ask questions.

    rm = RewardModel.load("artifact/")            # verifies the manifest and file hashes
    best = rm.rerank("alice", prompt, candidates, top_k=1)
    rm.feedback("alice", prompt, chosen=a, rejected=b)   # adapts alice's w on the device
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from rfm.adapt import UserAdapter, choose_questions
from rfm.adapt.user import ADAPTER_PRIORS
from rfm.runtime.artifact import Artifact, load_artifact
from rfm.runtime.features import FeatureExtractor
from rfm.runtime.store import UserRecord, UserStore

from rfm.errors import UsageError


@dataclass
class Ranked:
    """One reranked candidate."""

    index: int
    text: str
    score: float


def artifact_adapter(artifact: Artifact, prior: str = "population", C: float = 1.0,
                     prior_scale: float = 1.0) -> UserAdapter:
    """How a user's choices become w under this artifact (a non-adaptive model always gives its one reward);
    `prior="mixture"` centres a Gaussian at each training rater's row, so it needs the artifact's raters.npz."""
    if prior not in ADAPTER_PRIORS:
        raise UsageError(f"must be one of {', '.join(ADAPTER_PRIORS)}, got {prior!r}", param="prior")
    rows = None
    if prior == "mixture" and artifact.adaptive:
        raters = artifact.raters()
        if raters is None:
            raise UsageError(f"{artifact.root}: the artifact carries no rater weights (raters.npz) for the mixture "
                             "prior; re-export it with `rfm export`, or use the population prior", param="prior")
        rows = raters[1]
    return UserAdapter(artifact.population(), prior, C, prior_scale, adaptive=artifact.adaptive, rows=rows)


class RewardModel:
    """Personalised reward r_u(x, y) = <phi(x, y), w_u> with per-user weights kept on local disk."""

    def __init__(self, artifact: Artifact, extractor: FeatureExtractor, store: UserStore,
                 prior: str | None = None, C: float = 1.0):
        if prior is not None and prior not in ADAPTER_PRIORS:
            raise UsageError(f"must be one of {', '.join(ADAPTER_PRIORS)}, got {prior!r}", param="prior")
        self.artifact, self.extractor, self.store = artifact, extractor, store
        self.population = artifact.population()
        # None: each user keeps the prior their weights were fitted with (population for a new user).
        self.prior, self.C = prior, C
        self._adapters: dict[str, UserAdapter] = {}
        self._no_history: set[str] = set()  # users already looked up under earlier artifacts, in vain

    @classmethod
    def load(cls, artifact: str | os.PathLike, device: str = "auto", precision: str = "auto",
             threads: int | None = None, store: str | os.PathLike | None = None, prior: str | None = None,
             C: float = 1.0, max_stored: int = 512) -> RewardModel:
        art = load_artifact(artifact)
        extractor = FeatureExtractor(art, device=device, precision=precision, threads=threads)
        return cls(art, extractor, UserStore(art.fingerprint, art.features, store, max_stored), prior, C)

    # -- features and scores -------------------------------------------------------------------
    def features(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        """phi for many (prompt, response) pairs, (n, d)."""
        return self.extractor(prompts, responses)

    def adapter(self, prior: str | None = None) -> UserAdapter:
        """How this model turns a user's choices into w under `prior` (default: the model's, else population)."""
        prior = prior or self.prior or "population"
        if prior not in self._adapters:
            self._adapters[prior] = artifact_adapter(self.artifact, prior, self.C)
        return self._adapters[prior]

    def weights(self, user: str) -> np.ndarray:
        """The user's w: their stored fit, else the population prior mean."""
        record = self.record(user)
        return record.w if record is not None else self.population["mean"].copy()

    def record(self, user: str) -> UserRecord | None:
        """What is stored for the user under this artifact; a user known only to an earlier artifact in the
        same store is refitted here from their stored choices first (so a model update keeps their taste)."""
        record = self.store.read(user)
        if record is not None or user in self._no_history:
            return record
        old = self.store.history_elsewhere(user)
        if old is None:
            self._no_history.add(user)  # a new user: no search of the store on every later call
            return None
        return self._refit(user, old.choices, replace=True, prior=self.prior or old.prior,
                           migrated_from=old.fingerprint)

    def score(self, user: str, prompt: str, candidates: Sequence[str]) -> np.ndarray:
        """Rewards of candidate responses for this user."""
        _check_candidates(candidates, prompt=prompt)
        return self.extractor.candidates(prompt, candidates).astype(np.float64) @ self.weights(user)

    def rerank(self, user: str, prompt: str, candidates: Sequence[str], top_k: int | None = None) -> list[Ranked]:
        """Candidates best-first under the user's reward (best-of-n is top_k=1)."""
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
            raise UsageError(f"top_k must be a positive integer or None, got {top_k!r}")
        scores = self.score(user, prompt, candidates)
        order = np.argsort(-scores, kind="stable")[: top_k or len(candidates)]
        return [Ranked(int(i), candidates[i], float(scores[i])) for i in order]

    # -- adaptation --------------------------------------------------------------------------
    def feedback(self, user: str, prompt: str, chosen: str, rejected: str) -> np.ndarray:
        """Record one choice and refit the user's w exactly on everything stored; returns w."""
        return self.adapt(user, [(prompt, chosen, rejected)])

    def adapt(self, user: str, pairs: Sequence[tuple[str, str, str]], replace: bool = False,
              prior: str | None = None) -> np.ndarray:
        """Add (prompt, chosen, rejected) choices (or replace all with `replace`) and refit; returns w."""
        if not replace:
            self.record(user)  # a user of an earlier artifact is brought over first
        return self._refit(user, pairs, replace, prior).w

    def _refit(self, user: str, pairs: Sequence[tuple[str, str, str]], replace: bool, prior: str | None,
               migrated_from: str | None = None) -> UserRecord:
        """Validate the choices, add them (or replace all), refit w and store the record."""
        for choice in pairs:
            if len(choice) != 3 or not all(isinstance(t, str) for t in choice):
                raise UsageError("a choice is (prompt, chosen, rejected), three strings")
            _prompt, chosen, rejected = choice
            if not chosen.strip() or not rejected.strip() or chosen.strip() == rejected.strip():
                raise UsageError("a choice needs two different, non-empty responses")
        prompts = [p for p, _, _ in pairs for _ in (0, 1)]
        responses = [r for _, c, rej in pairs for r in (c, rej)]
        phi = self.extractor(prompts, responses).astype(np.float64)
        new = phi[0::2] - phi[1::2]
        with self.store.locked(user):
            record = self.store.read(user)
            if record is None or replace:
                record = UserRecord(user, self.artifact.fingerprint, self.population["mean"].copy(),
                                    np.zeros((0, self.artifact.features)),
                                    feedback_total=0 if record is None else record.feedback_total)
            record.prior = prior or self.prior or record.prior  # an explicit prior is remembered
            record.deltas = np.vstack([record.deltas, new])[-self.store.max_deltas :]
            record.choices = [*record.choices, *(tuple(c) for c in pairs)][-self.store.max_deltas :]
            record.feedback_total += len(new)
            record.w = self.fit(record.deltas, record.prior)
            record.migrated_from = migrated_from or record.migrated_from
            self.store.write(record)
        return record

    def fit(self, deltas: np.ndarray, prior: str | None = None) -> np.ndarray:
        """MAP weights from feature differences (chosen - rejected); the prior mean for a non-adaptive model."""
        return self.adapter(prior).fit(deltas)

    def next_question(self, user: str, prompt: str, candidates: Sequence[str],
                      method: str = "information") -> tuple[int, int]:
        """The pair of candidates whose answer would teach the most about this user's w."""
        _check_candidates(candidates, at_least=2, prompt=prompt)
        phi = self.extractor.candidates(prompt, candidates).astype(np.float64)
        first, second = np.triu_indices(len(candidates), k=1)  # every pair i < j, in row order
        deltas = phi[first] - phi[second]
        record = self.record(user)
        adapter = self.adapter(record.prior if record is not None else None)
        answered = record.deltas if record is not None else None
        best = choose_questions(adapter, deltas, 1, method, answered=answered)[0]
        return int(first[best]), int(second[best])


# Candidates per call at most: a reranker's n is 2-64; thousands means a caller's bug (or a hostile one).
MAX_CANDIDATES = 4096


def _check_candidates(candidates: Sequence[str], at_least: int = 1, prompt: str = "") -> None:
    if not isinstance(prompt, str):
        raise UsageError(f"the prompt must be a string, got {type(prompt).__name__}")
    if isinstance(candidates, str) or len(candidates) < at_least or not all(isinstance(c, str) for c in candidates):
        raise UsageError(f"need at least {at_least} candidate response(s) as a list of strings")
    if len(candidates) > MAX_CANDIDATES:
        raise UsageError(f"{len(candidates)} candidates in one call; at most {MAX_CANDIDATES} (split them)")
