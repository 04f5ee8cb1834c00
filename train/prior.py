"""The population prior's width, checked on the training raters' own validation pairs (empirical Bayes).

The rater weight rows alone can understate how much people differ: the per-rater deviations are
L2-shrunk in training, and when no epoch beats the warm start every row is the same, so their
covariance is ~0 and adaptation could never move a new user's w. Here each candidate width is tried
the way it will be used: every training rater is adapted (MAP) from a few of their training pairs
(the few-shot regime a new user is in) under N(mean, cov + tau I) and scored on their validation
pairs that share no response with those few (`train.selection`); the width with the best validation
log-likelihood wins (tau = 0, the plain weight covariance, unless a wider prior beats it). A best
width on the grid's upper edge extends the grid, so data whose raters differ a lot is not capped.
"""

from __future__ import annotations

import numpy as np
from rfm.adapt import MAPLogisticRegression
from rfm.train.selection import FewShotTask, fewshot_scores, fewshot_tasks

# Added variance of one rater's reward margin on a typical pair, in squared logits.
MARGIN_VARIANCE_GRID = (0.0, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
# Validation log-likelihood (nats per pair) a wider prior must gain over the best narrower one.
MIN_GAIN = 1e-3
# Random draws of a rater's adaptation pairs per shot count.
SELECTION_DRAWS = 2
# How often a grid whose best width is its largest is extended (x3 each time).
MAX_EXTENSIONS = 4


def _pick(scores: list[float]) -> int:
    best = 0
    for i, score in enumerate(scores):
        if score > scores[best] + MIN_GAIN:  # a wider prior has to earn its place
            best = i
    return best


def score_widths(delta: np.ndarray, tasks: list[FewShotTask], mean: np.ndarray, cov: np.ndarray,
                 grid: tuple[float, ...], train_scale: float) -> tuple[list[float], int, list[float]]:
    """Validation log-likelihood and accuracy of each width; the chosen index (grid extended at its edge)."""
    grid = list(grid)
    d = delta.shape[1]
    logliks, accuracies = [], []

    def score(margin_variance: float) -> None:
        adapter = MAPLogisticRegression(mean, cov + margin_variance / train_scale * np.eye(d))
        accuracy, loglik = fewshot_scores(delta, tasks, adapter)
        logliks.append(loglik)
        accuracies.append(accuracy)

    for g in grid:
        score(g)
    for _ in range(MAX_EXTENSIONS):
        if _pick(logliks) != len(grid) - 1 or grid[-1] <= 0:
            break
        grid.append(round(grid[-1] * 3.0, 6))
        score(grid[-1])
    return grid, _pick(logliks), [logliks, accuracies]


def choose_prior_width(delta: np.ndarray, user: np.ndarray, val: np.ndarray, mean: np.ndarray, cov: np.ndarray,
                       a: np.ndarray | None = None, b: np.ndarray | None = None,
                       grid: tuple[float, ...] = MARGIN_VARIANCE_GRID, draws: int = SELECTION_DRAWS,
                       seed: int = 0, tasks: list[FewShotTask] | None = None) -> dict:
    """The isotropic variance tau to add to `cov`, chosen by the raters' few-shot validation log-likelihood.

    `delta` holds phi(chosen) - phi(rejected) per pair, `user` the rater row, `val` the validation mask,
    `a`/`b` the text index of each pair's two responses (validation pairs sharing a text with the
    adaptation pairs are not scored). Returns tau, the chosen margin variance, the per-candidate
    validation log-likelihood and accuracy, and the few-shot accuracy at the chosen width.
    """
    d = delta.shape[1]
    train_scale = float(np.mean(np.sum(delta[~val] ** 2, axis=1))) if (~val).any() else 0.0
    if tasks is None:
        rows = np.arange(len(delta))
        tasks = fewshot_tasks(user, val, rows if a is None else a, rows + len(delta) if b is None else b,
                              draws=draws, seed=seed)
    raters = len({int(user[t.test[0]]) for t in tasks})
    if not tasks or train_scale <= 0:
        return {"tau": 0.0, "margin_variance": 0.0, "val_loglik": None, "raters": 0, "fewshot_acc": None}
    given = tuple(grid)
    grid, best, (logliks, accuracies) = score_widths(delta, tasks, mean, cov, given, train_scale)
    return {"tau": grid[best] / train_scale, "margin_variance": grid[best],
            "val_loglik": {str(g): round(s, 6) for g, s in zip(grid, logliks, strict=True)},
            "val_acc": {str(g): round(s, 6) for g, s in zip(grid, accuracies, strict=True)},
            "fewshot_acc": accuracies[best], "grid_extended": len(grid) > len(given),
            "on_grid_edge": best == len(grid) - 1 and best > 0,
            "raters": raters, "d": d}
