"""The population prior's width, checked on the training raters' own validation pairs (empirical Bayes).

The rater weight rows alone can understate how much people differ: the per-rater deviations are
L2-shrunk in training, and when no epoch beats the warm start every row is the same, so their
covariance is ~0 and adaptation could never move a new user's w. Here each candidate width is tried
the way it will be used: every training rater is adapted (MAP) from their training pairs under
N(mean, cov + tau I), scored on their held-out validation pairs, and the width with the best
validation log-likelihood wins (tau = 0, the plain weight covariance, when nothing beats it).
"""

from __future__ import annotations

import numpy as np
from rfm.adapt import MAPLogisticRegression

# Added variance of one rater's reward margin on a typical pair, in squared logits.
MARGIN_VARIANCE_GRID = (0.0, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)


def choose_prior_width(delta: np.ndarray, user: np.ndarray, val: np.ndarray, mean: np.ndarray, cov: np.ndarray,
                       grid: tuple[float, ...] = MARGIN_VARIANCE_GRID) -> dict:
    """The isotropic variance tau to add to `cov`, chosen by the raters' validation log-likelihood.

    `delta` holds phi(chosen) - phi(rejected) per pair, `user` the rater row, `val` the validation mask.
    Returns tau, the chosen margin variance and the per-candidate validation log-likelihood.
    """
    d = delta.shape[1]
    train_scale = float(np.mean(np.sum(delta[~val] ** 2, axis=1))) if (~val).any() else 0.0
    raters = [u for u in np.unique(user) if (val & (user == u)).any() and (~val & (user == u)).any()]
    if not raters or train_scale <= 0:
        return {"tau": 0.0, "margin_variance": 0.0, "val_loglik": None, "raters": 0}
    scores = []
    for margin_variance in grid:
        tau = margin_variance / train_scale
        adapter = MAPLogisticRegression(mean, cov + tau * np.eye(d))
        total, count = 0.0, 0
        for u in raters:
            train_rows, val_rows = np.flatnonzero(~val & (user == u)), np.flatnonzero(val & (user == u))
            w = adapter.fit(delta[train_rows], np.ones(len(train_rows))).coef_
            total -= float(np.logaddexp(0.0, -(delta[val_rows] @ w)).sum())
            count += len(val_rows)
        scores.append(total / count)
    best = 0
    for i, score in enumerate(scores):
        if score > scores[best] + 1e-6:  # a wider prior has to earn its place
            best = i
    return {"tau": grid[best] / train_scale, "margin_variance": grid[best],
            "val_loglik": {str(g): round(s, 6) for g, s in zip(grid, scores, strict=True)}, "raters": len(raters)}
