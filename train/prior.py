"""The population prior's width, checked on raters' few-shot choices (empirical Bayes).

The rater weight rows alone can misstate how much people differ: the per-rater deviations are
L2-shrunk in training, and when no epoch beats the warm start every row is the same, so their
covariance is ~0 and adaptation could never move a new user's w; and where the features memorise
the training raters' items, a wide prior adapts new people towards noise. Here each candidate is
tried the way it will be used: every judging rater (held-out selection raters when training keeps
some, else the training raters' validation pairs) is adapted (MAP) from a few of their pairs under
N(mean, cov_scale * cov + tau I) and scored on pairs that share no response with those few
(`train.selection`). The best validation log-likelihood wins, narrowest first: shrunk covariances
(cov x 0.01 .. 0.3, tried only when held-out raters judge: training raters' own pairs cannot show
that adapting fails to transfer), the plain weight covariance, then cov + tau I; a wider prior must
earn its place. A best width on the grid's upper edge extends the grid, so data whose raters differ a lot is
not capped.
"""

from __future__ import annotations

import numpy as np
from rfm.adapt import MAPLogisticRegression
from rfm.train.selection import FewShotTask, fewshot_scores, fewshot_tasks

# Added variance of one rater's reward margin on a typical pair, in squared logits.
MARGIN_VARIANCE_GRID = (0.0, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
# Shrunk priors tried before those (cov x factor): where adapting does not transfer to new responses,
# a tight prior keeps a new user at the population reward instead of chasing noise.
SHRINK_FACTORS = (0.01, 0.1, 0.3)
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
                 grid: tuple[float, ...], train_scale: float, shrink: tuple[float, ...] = SHRINK_FACTORS
                 ) -> tuple[list[tuple[float, float]], int, list[list[float]]]:
    """Validation log-likelihood and accuracy of each (cov factor, margin variance), narrowest first;
    the chosen index (the margin-variance grid extended at its edge)."""
    candidates = [(f, 0.0) for f in shrink] + [(1.0, g) for g in grid]
    d = delta.shape[1]
    logliks, accuracies = [], []

    def score(factor: float, margin_variance: float) -> None:
        adapter = MAPLogisticRegression(mean, factor * cov + margin_variance / train_scale * np.eye(d))
        accuracy, loglik = fewshot_scores(delta, tasks, adapter)
        logliks.append(loglik)
        accuracies.append(accuracy)

    for factor, g in candidates:
        score(factor, g)
    for _ in range(MAX_EXTENSIONS):
        if _pick(logliks) != len(candidates) - 1 or candidates[-1][1] <= 0:
            break
        candidates.append((1.0, round(candidates[-1][1] * 3.0, 6)))
        score(*candidates[-1])
    return candidates, _pick(logliks), [logliks, accuracies]


def choose_prior_width(delta: np.ndarray, user: np.ndarray, val: np.ndarray, mean: np.ndarray, cov: np.ndarray,
                       a: np.ndarray | None = None, b: np.ndarray | None = None,
                       grid: tuple[float, ...] = MARGIN_VARIANCE_GRID, draws: int = SELECTION_DRAWS,
                       seed: int = 0, tasks: list[FewShotTask] | None = None, shrink: tuple[float, ...] = ()
                       ) -> dict:
    """The prior N(mean, cov_scale * cov + tau I), chosen by the raters' few-shot validation log-likelihood.

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
        return {"tau": 0.0, "margin_variance": 0.0, "cov_scale": 1.0, "val_loglik": None, "raters": 0,
                "fewshot_acc": None}
    candidates, best, (logliks, accuracies) = score_widths(delta, tasks, mean, cov, tuple(grid), train_scale, shrink)
    names = [f"cov x{f:g}" if f != 1.0 else str(g) for f, g in candidates]
    factor, margin_variance = candidates[best]
    return {"tau": margin_variance / train_scale, "margin_variance": margin_variance, "cov_scale": factor,
            "val_loglik": {n: round(s, 6) for n, s in zip(names, logliks, strict=True)},
            "val_acc": {n: round(s, 6) for n, s in zip(names, accuracies, strict=True)},
            "fewshot_acc": accuracies[best], "grid_extended": len(candidates) > len(shrink) + len(grid),
            "on_grid_edge": best == len(candidates) - 1,
            "raters": raters, "d": d}
