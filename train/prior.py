"""The population prior's width, checked on the training raters' own validation pairs (empirical Bayes).

The rater weight rows alone can understate how much people differ: the per-rater deviations are
L2-shrunk in training, and when no epoch beats the warm start every row is the same, so their
covariance is ~0 and adaptation could never move a new user's w. Here each candidate width is tried
the way it will be used: every training rater is adapted (MAP) from a few of their training pairs
(the few-shot regime a new user is in) under N(mean, cov + tau I) and scored on their held-out
validation pairs; the width with the best validation log-likelihood wins (tau = 0, the plain
weight covariance, unless a wider prior beats it). Fitting on all of a rater's pairs instead would
favour widths that only pay off after many choices and overfit a new user's first few.
"""

from __future__ import annotations

import numpy as np
from rfm.adapt import MAPLogisticRegression

# Added variance of one rater's reward margin on a typical pair, in squared logits.
MARGIN_VARIANCE_GRID = (0.0, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
# Validation log-likelihood (nats per pair) a wider prior must gain over the best narrower one.
MIN_GAIN = 1e-3
# Shots a training rater is adapted from when a width is scored, and random draws of them per rater.
SELECTION_SHOTS = (5, 10, 20)
SELECTION_DRAWS = 2


def choose_prior_width(delta: np.ndarray, user: np.ndarray, val: np.ndarray, mean: np.ndarray, cov: np.ndarray,
                       grid: tuple[float, ...] = MARGIN_VARIANCE_GRID, shots: tuple[int, ...] = SELECTION_SHOTS,
                       draws: int = SELECTION_DRAWS, seed: int = 0) -> dict:
    """The isotropic variance tau to add to `cov`, chosen by the raters' few-shot validation log-likelihood.

    `delta` holds phi(chosen) - phi(rejected) per pair, `user` the rater row, `val` the validation mask.
    Returns tau, the chosen margin variance and the per-candidate validation log-likelihood.
    """
    d = delta.shape[1]
    train_scale = float(np.mean(np.sum(delta[~val] ** 2, axis=1))) if (~val).any() else 0.0
    raters = [u for u in np.unique(user) if (val & (user == u)).any() and (~val & (user == u)).any()]
    if not raters or train_scale <= 0:
        return {"tau": 0.0, "margin_variance": 0.0, "val_loglik": None, "raters": 0}
    rng = np.random.default_rng(seed)
    tasks = []  # (adaptation rows, validation rows): the same draws for every candidate width
    for u in raters:
        train_rows, val_rows = np.flatnonzero(~val & (user == u)), np.flatnonzero(val & (user == u))
        for m in sorted({min(m, len(train_rows)) for m in shots}):
            for _ in range(draws if m < len(train_rows) else 1):
                tasks.append((rng.choice(train_rows, size=m, replace=False), val_rows))
    scores = []
    for margin_variance in grid:
        adapter = MAPLogisticRegression(mean, cov + margin_variance / train_scale * np.eye(d))
        total, count = 0.0, 0
        for adapt_rows, val_rows in tasks:
            w = adapter.fit(delta[adapt_rows], np.ones(len(adapt_rows))).coef_
            total -= float(np.logaddexp(0.0, -(delta[val_rows] @ w)).sum())
            count += len(val_rows)
        scores.append(total / count)
    best = 0
    for i, score in enumerate(scores):
        if score > scores[best] + MIN_GAIN:  # a wider prior has to earn its place
            best = i
    return {"tau": grid[best] / train_scale, "margin_variance": grid[best],
            "val_loglik": {str(g): round(s, 6) for g, s in zip(grid, scores, strict=True)}, "raters": len(raters)}
