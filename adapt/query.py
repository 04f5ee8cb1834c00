"""Which comparison to ask a user next: rank candidate pairs by expected information about w."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from rfm.adapt.logistic import sigmoid

if TYPE_CHECKING:
    from rfm.adapt.user import UserAdapter


def rank_queries(deltas: np.ndarray, mean: np.ndarray, cov: np.ndarray, method: str = "information") -> np.ndarray:
    """Indices of candidate feature differences, most useful question first.

    `information` (default): expected reduction of the Laplace posterior's log-determinant,
    0.5 * log(1 + p(1 - p) * x^T S x), with p the predictive probability moderated by the
    posterior variance along x (MacKay's probit approximation). `uncertainty`: |p - 0.5|, smallest first.
    """
    X = np.atleast_2d(np.asarray(deltas, dtype=np.float64))
    if not np.all(np.isfinite(X)):
        raise ValueError("deltas contain NaN or inf")
    var = np.einsum("ij,jk,ik->i", X, cov, X)
    kappa = 1.0 / np.sqrt(1.0 + np.pi * var / 8.0)
    p = sigmoid(kappa * (X @ mean))
    if method == "uncertainty":
        return np.argsort(np.abs(p - 0.5), kind="stable")
    if method == "information":
        gain = 0.5 * np.log1p(p * (1.0 - p) * var)
        return np.argsort(-gain, kind="stable")
    raise ValueError("method must be 'information' or 'uncertainty'")


def choose_questions(adapter: UserAdapter, deltas: np.ndarray, m: int, method: str = "information",
                     answered: np.ndarray | None = None) -> list[int]:
    """Indices of `m` of the candidate pairs `deltas`, asked one at a time (`RewardModel.next_question` asks
    the first): each the best under the posterior given the answers so far (`answered`, then those chosen).

    Each answer is read off the row's orientation (chosen - rejected), which the ranking ignores: both
    criteria are symmetric in the sign of x."""
    X = np.atleast_2d(np.asarray(deltas, dtype=np.float64))
    known = np.zeros((0, X.shape[1])) if answered is None else np.atleast_2d(np.asarray(answered, dtype=np.float64))
    chosen: list[int] = []
    left = list(range(len(X)))
    for _ in range(min(m, len(X))):
        mean, cov = adapter.posterior(np.vstack([known, X[chosen]]))
        chosen.append(left.pop(int(rank_queries(X[left], mean, cov, method)[0])))
    return chosen
