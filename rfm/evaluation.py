"""`rfm eval`: the paper's protocol (docs/DESIGN.md §4) through the ONNX runtime and the on-device adapter.

Held-out users: for each user, shot count m and seeded repeat, adapt w on m of the user's pairs and
measure accuracy on the rest; average per user, then over users, with a 95% bootstrap interval over
users. m = 0 is the population prior. The headline ("new responses") scores only test pairs that
share no response with the m adaptation pairs: what a desktop app does is rank candidates the user
never judged. The same users are compared at every m: a user who cannot supply m adaptation pairs
plus a new-response test pair at every m is left out of every column (and counted). The figure on
pairs that may re-use judged responses is reported beside it, labelled. Seen users: each training
rater's own row of W.
"""

from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rfm.adapt import UserAdapter, choose_questions
from rfm.data.jsonl import Pair, index_texts, load_pairs
from rfm.errors import UsageError
from rfm.runtime.artifact import Artifact, load_artifact
from rfm.runtime.features import FeatureExtractor
from rfm.runtime.model import artifact_adapter


@dataclass
class UserPairs:
    """One user's pairs as feature differences, with the response texts (for the disjoint option)."""

    deltas: np.ndarray
    texts: list[tuple[str, str]]


def featurise_pairs(extractor: FeatureExtractor, pairs: Sequence[Pair], progress: bool = False) -> np.ndarray:
    """phi(chosen) - phi(rejected) per pair, computing each distinct (prompt, response) once."""
    texts, a, b = index_texts(pairs)
    phi = np.empty((len(texts), extractor.dim), dtype=np.float64)
    step = 256
    bar = None
    if progress:
        try:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(texts), desc="features", unit="text")
        except ImportError:
            bar = None
    for start in range(0, len(texts), step):
        chunk = texts[start : start + step]
        phi[start : start + len(chunk)] = extractor([p for p, _ in chunk], [r for _, r in chunk])
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()
    return phi[np.array(a, dtype=np.int64)] - phi[np.array(b, dtype=np.int64)]


def group_by_user(pairs: Sequence[Pair], deltas: np.ndarray) -> dict[str, UserPairs]:
    rows: dict[str, list[int]] = defaultdict(list)
    for i, p in enumerate(pairs):
        if p.user_id is not None:
            rows[p.user_id].append(i)
    return {u: UserPairs(deltas[idx], [(pairs[i].chosen, pairs[i].rejected) for i in idx])
            for u, idx in sorted(rows.items())}


def accuracy(deltas: np.ndarray, w: np.ndarray) -> float:
    """Share of pairs ranked right; a tie counts half."""
    margin = deltas @ w
    return float(np.mean((margin > 0) + 0.5 * (margin == 0)))


def bootstrap_ci(values: Sequence[float], seed: int, n_boot: int = 2000) -> list[float]:
    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2:
        return [float(values.mean()), float(values.mean())] if len(values) else [float("nan")] * 2
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(n_boot, len(values)))].mean(axis=1)
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def _rng(seed: int, user: str, m: int, repeat: int) -> np.random.Generator:
    digest = hashlib.sha256(f"{seed}|{user}|{m}|{repeat}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def split_shots(user: str, data: UserPairs, m: int, repeat: int, seed: int, disjoint: bool
                ) -> tuple[np.ndarray, np.ndarray]:
    """Indices of m adaptation pairs and of the test pairs (sharing no response with them if `disjoint`)."""
    n = len(data.deltas)
    perm = _rng(seed, user, m, repeat).permutation(n)
    train, test = perm[:m], perm[m:]
    if disjoint and m:
        seen = {t for i in train for t in data.texts[i]}
        test = np.array([i for i in test if not (set(data.texts[i]) & seen)], dtype=np.int64)
    return train, test


ADAPTER_PRIORS = {"map": "population", "l2": "none"}  # the old --adapter names


def user_adapter(artifact: Artifact, prior: str = "population", C: float = 1.0, prior_scale: float = 1.0
                 ) -> UserAdapter:
    """The runtime's adapter for this artifact (a non-adaptive model always gives its one reward)."""
    return artifact_adapter(artifact, ADAPTER_PRIORS.get(prior, prior), C, prior_scale)


PROTOCOLS = {True: "new-responses", False: "shared-responses"}


def evaluate_heldout(users: dict[str, UserPairs], adapter: UserAdapter, shots: Sequence[int], repeats: int,
                     seed: int, disjoint: bool = True, min_test: int = 1, same_users: bool = True,
                     by_user: bool = False) -> dict:
    """Held-out accuracy at each shot count: per user (mean over repeats), then over users.

    `disjoint`: test pairs share no response with the adaptation pairs (the headline protocol).
    `same_users`: every column covers the same users, those with a usable split at every m.
    `by_user`: each column also lists every user's accuracy (for paired comparisons between models).
    """
    per_user: dict[str, dict[str, float]] = {str(m): {} for m in shots}
    for m in shots:
        for user, data in users.items():
            scores = []
            for r in range(repeats if m > 0 else 1):
                train, test = split_shots(user, data, m, r, seed, disjoint)
                if len(train) < m or len(test) < min_test:
                    continue
                scores.append(accuracy(data.deltas[test], adapter.fit(data.deltas[train])))
            if scores:
                per_user[str(m)][user] = float(np.mean(scores))
    common = set(users)
    for row in per_user.values():
        common &= set(row)
    result: dict = {"users": len(common) if same_users else len(users), "protocol": PROTOCOLS[disjoint],
                    "same_users_at_every_m": same_users, "excluded_users": len(users) - len(common) if same_users
                    else 0, "shots": {}}
    for m in shots:
        row = per_user[str(m)]
        values = [row[u] for u in sorted(common)] if same_users else [row[u] for u in sorted(row)]
        result["shots"][str(m)] = {
            "accuracy": float(np.mean(values)) if values else float("nan"),
            "ci95": bootstrap_ci(values, seed),
            "users": len(values),
            "skipped_users": len(users) - len(values),
        }
        if by_user:
            result["shots"][str(m)]["by_user"] = {u: row[u] for u in sorted(common if same_users else row)}
    return result


def question_split(user: str, data: UserPairs, repeat: int, seed: int) -> tuple[np.ndarray, np.ndarray, str]:
    """A user's pairs as (pool to ask from, test pairs sharing no response with any pool pair, how split).

    By pairs: a seeded half of them is the pool, the rest minus those re-using a pool response is the
    test. Where responses recur so often that this leaves fewer test pairs than a quarter of the pool
    (one prompt, many pairs per joke: Jester), by responses instead: a seeded half of the distinct
    responses, the pool the pairs inside it, the test the pairs outside it."""
    n = len(data.deltas)
    rng = _rng(seed, user, -1, repeat)  # m = -1: a stream of its own, not one of split_shots' draws
    perm = rng.permutation(n)
    pool = perm[: n // 2]
    seen = {t for i in pool for t in data.texts[i]}
    test = np.array([i for i in perm[n // 2 :] if not (set(data.texts[i]) & seen)], dtype=np.int64)
    if len(test) >= len(pool) / 4:
        return pool, test, "pairs"
    responses = sorted({t for pair in data.texts for t in pair})
    half = {responses[i] for i in rng.permutation(len(responses))[: len(responses) // 2]}
    inside = np.array([sum(t in half for t in pair) for pair in data.texts])
    return np.flatnonzero(inside == 2), np.flatnonzero(inside == 0), "responses"


QUESTION_STRATEGIES = ("random", "information")


def evaluate_questions(users: dict[str, UserPairs], adapter: UserAdapter, shots: Sequence[int], repeats: int,
                       seed: int, strategies: Sequence[str] = QUESTION_STRATEGIES, min_test: int = 5) -> dict:
    """Held-out accuracy when a user answers m questions chosen from a pool of their pairs: at random, or
    as `RewardModel.next_question` would ask them (`information`, `uncertainty`: one at a time, each the
    best given the answers before it), scored on the same test pairs, which share no response with the
    pool, for every strategy and m (`question_split`). Per user (mean over repeats), then over users,
    the same users everywhere; each strategy minus random paired over users."""
    largest = max(shots)
    per_user: dict[str, dict[str, dict[str, list[float]]]] = {s: {str(m): {} for m in shots} for s in strategies}
    splits: dict[str, int] = {}
    sizes = []
    for user, data in users.items():
        for r in range(repeats):
            pool, test, how = question_split(user, data, r, seed)
            if len(pool) < largest or len(test) < min_test:
                continue
            splits[how] = splits.get(how, 0) + 1
            sizes.append((len(pool), len(test)))
            asked = data.deltas[pool]
            order = {"random": _rng(seed, user, largest, r).permutation(len(pool))[:largest]}
            for strategy in strategies:
                if strategy != "random":
                    order[strategy] = np.array(choose_questions(adapter, asked, largest, strategy), dtype=np.int64)
                for m in shots:
                    w = adapter.fit(asked[order[strategy][:m]])
                    per_user[strategy][str(m)].setdefault(user, []).append(accuracy(data.deltas[test], w))
    kept = sorted(per_user[strategies[0]][str(shots[0])])
    means = {s: {m: {u: float(np.mean(row[u])) for u in kept} for m, row in cols.items()} for s, cols in per_user.items()}
    result: dict = {"users": len(kept), "excluded_users": len(users) - len(kept), "splits": splits,
                    "pool_pairs": float(np.mean([p for p, _ in sizes])) if sizes else 0.0,
                    "test_pairs": float(np.mean([t for _, t in sizes])) if sizes else 0.0, "strategies": {}}
    for strategy, cols in means.items():
        result["strategies"][strategy] = {"shots": {m: {"accuracy": float(np.mean(list(v.values()))) if v else float("nan"),
                                                        "ci95": bootstrap_ci(list(v.values()), seed), "by_user": v}
                                                    for m, v in cols.items()}}
        if strategy != "random" and "random" in means:
            result["strategies"][strategy]["minus_random"] = {
                m: paired_difference(v, means["random"][m], seed) for m, v in cols.items()}
    return result


def evaluate_seen(users: dict[str, UserPairs], artifact: Artifact) -> dict:
    """Each training rater's own trained row of W on their held-back pairs (pooled over pairs)."""
    raters = artifact.raters()
    if raters is None:
        raise UsageError(f"{artifact.root}: the artifact carries no rater weights for --seen")
    ids, weights = raters
    row = {u: i for i, u in enumerate(ids)}
    known = {u: d for u, d in users.items() if u in row}
    if not known and len(ids) == 1:  # baselines and probes have one shared row
        known, row = users, dict.fromkeys(users, 0)
    if not known:
        raise UsageError("none of the data's users is a training rater of this artifact", param="seen")
    correct = sum(accuracy(d.deltas, weights[row[u]]) * len(d.deltas) for u, d in known.items())
    total = sum(len(d.deltas) for d in known.values())
    per_user = [accuracy(d.deltas, weights[row[u]]) for u, d in known.items()]
    return {"users": len(known), "accuracy": correct / total, "user_mean_accuracy": float(np.mean(per_user)),
            "pairs": total, "unknown_users": len(users) - len(known)}


def paired_difference(a: dict[str, float], b: dict[str, float], seed: int = 0, n_boot: int = 2000) -> dict:
    """Mean of a[user] - b[user] over the users both hold, with a bootstrap 95% CI over those users."""
    users = sorted(set(a) & set(b))
    if not users:
        return {"diff": float("nan"), "ci95": [float("nan"), float("nan")], "users": 0}
    diffs = np.array([a[u] - b[u] for u in users])
    boots = np.random.default_rng(seed).choice(diffs, size=(n_boot, len(diffs))).mean(axis=1)
    return {"diff": float(diffs.mean()), "ci95": [float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))],
            "users": len(users)}


def _versus(other_dir: str | os.PathLike, pairs: Sequence[Pair], mine: dict[str, dict[str, float]],
            shots: Sequence[int], repeats: int,
            seed: int, prior: str, C: float, prior_scale: float, precision: str, device: str,
            threads: int | None) -> dict:
    """Another artifact on the same users and draws: this one minus it per m, paired over users (new responses)."""
    other = load_artifact(other_dir)
    extractor = FeatureExtractor(other, device=device, precision=precision, threads=threads)
    users = group_by_user(pairs, featurise_pairs(extractor, pairs))
    theirs = evaluate_heldout(users, user_adapter(other, prior, C, prior_scale), shots, repeats, seed, by_user=True)
    return {"artifact": str(other_dir), "kind": other.manifest.kind, "precision": extractor.precision,
            "shots": {m: paired_difference(mine[m], theirs["shots"][m]["by_user"], seed) for m in mine}}


def evaluate(artifact_dir: str | os.PathLike, data: str | os.PathLike, shots: Sequence[int] = (0, 5, 10, 20, 50),
             repeats: int = 5, seed: int = 0, prior: str = "population", precision: str = "auto", device: str = "auto",
             threads: int | None = None, seen: bool = False, C: float = 1.0, prior_scale: float = 1.0,
             progress: bool = False, versus: str | os.PathLike | None = None, questions: bool = False) -> dict:
    """The full `rfm eval` result object (docs/DESIGN.md §3.5).

    `heldout` is the headline protocol (new responses, same users at every m);
    `heldout_shared_responses` the same users and draws with test pairs that may re-use judged responses;
    `versus` (with another artifact, e.g. the one-size model): this artifact minus that one per m, paired
    over the same users and draws, with a bootstrap 95% CI.
    `questions`: `evaluate_questions` (m questions as `rfm ask` asks them vs m random pairs of one pool).
    """
    if any(m < 0 for m in shots):
        raise UsageError("must be >= 0", param="shots")
    if repeats < 1:
        raise UsageError("must be >= 1", param="repeats")
    artifact = load_artifact(artifact_dir)
    extractor = FeatureExtractor(artifact, device=device, precision=precision, threads=threads)
    pairs = load_pairs(data)
    users = group_by_user(pairs, featurise_pairs(extractor, pairs, progress))
    if not users:
        raise UsageError(f"{data}: no pairs with a user_id to evaluate")
    result = {"artifact": str(artifact_dir), "precision": extractor.precision, "device": extractor.device,
              "adapter": f"map, prior {ADAPTER_PRIORS.get(prior, prior)}" if artifact.adaptive
              else "none (non-adaptive model)", "kind":
              artifact.manifest.kind, "data": str(data), "seed": seed, "repeats": repeats,
              "prior_width": (artifact.manifest.training or {}).get("prior_width")}
    if seen and versus:
        raise UsageError("compares held-out users; drop it with --seen", param="versus")
    if seen and questions:
        raise UsageError("asks held-out users; drop it with --seen", param="questions")
    if seen:
        result["heldout"] = {"users": 0, "shots": {}}
        result["heldout_shared_responses"] = None
        result["seen"] = evaluate_seen(users, artifact)
    else:
        raters = artifact.raters()
        overlap = set(users) & set(raters[0]) if raters else set()
        if overlap and overlap == set(users):
            raise UsageError(f"{data}: every user is a training rater of this artifact; pass --seen for the "
                             "seen-user test split, or use held-out users")
        adapter = user_adapter(artifact, prior, C, prior_scale)
        result["heldout"] = evaluate_heldout(users, adapter, shots, repeats, seed, disjoint=True, by_user=bool(versus))
        result["heldout"]["training_raters_in_data"] = len(overlap)
        result["heldout_shared_responses"] = evaluate_heldout(users, adapter, shots, repeats, seed, disjoint=False)
        result["seen"] = None
        if questions:
            result["questions"] = evaluate_questions(users, adapter, shots, repeats, seed)
            for row in result["questions"]["strategies"].values():
                for column in row["shots"].values():
                    column.pop("by_user")
        if versus:  # per-user accuracies pair the two artifacts; the JSON keeps only the differences
            mine = {m: row.pop("by_user") for m, row in result["heldout"]["shots"].items()}
            result["versus"] = _versus(versus, pairs, mine, shots, repeats, seed, prior, C, prior_scale,
                                       precision, device, threads)
    return result
