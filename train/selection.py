"""Judge a trained model the way the product meets a new person: adapt from a few choices, rank new responses.

Each training rater is treated as a new user: w is fitted (MAP under the population prior) from `m`
of their *training* pairs and scored on their *validation* pairs that share no response with those m
pairs. The same draws serve every candidate (epoch, prior width), so candidates are compared on
equal terms. This replaces seen-rater validation loss as the criterion of what ships: that loss
prefers an underconfident, chance-level epoch over an overconfident model that ranks well.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from rfm.adapt import MAPLogisticRegression, fit_choices

# Shots a training rater is adapted from; 0 scores the prior mean alone (what a brand-new user gets), so
# an epoch cannot win by helping adaptation while making the one-size reward worse.
SELECTION_SHOTS = (0, 5, 10, 20)


@dataclass
class FewShotTask:
    """One rater's adaptation rows and the validation rows that share no text with them."""

    adapt: np.ndarray
    test: np.ndarray


def fewshot_tasks(user: np.ndarray, val: np.ndarray, a: np.ndarray, b: np.ndarray,
                  shots: tuple[int, ...] = SELECTION_SHOTS, draws: int = 1, seed: int = 0,
                  rows: np.ndarray | None = None) -> list[FewShotTask]:
    """Seeded few-shot tasks over every rater with both training and validation pairs.

    `a`, `b` index the distinct texts of each pair; a validation pair is left out of a task when
    either of its texts appears in that task's adaptation pairs (new responses only). `rows` (a
    mask over pairs) limits the tasks to those pairs' raters, e.g. the raters kept out of training.
    """
    rng = np.random.default_rng(seed)
    tasks = []
    for u in np.unique(user if rows is None else user[rows]):
        mine = (user == u) if rows is None else (user == u) & rows
        train_rows, val_rows = np.flatnonzero(~val & mine), np.flatnonzero(val & mine)
        if not len(train_rows) or not len(val_rows):
            continue
        for m in sorted({min(m, len(train_rows)) for m in shots}):
            for _ in range(draws if 0 < m < len(train_rows) else 1):
                adapt = np.sort(rng.choice(train_rows, size=m, replace=False))
                seen = set(a[adapt].tolist()) | set(b[adapt].tolist())
                test = np.array([r for r in val_rows if a[r] not in seen and b[r] not in seen], dtype=np.int64)
                if len(test):
                    tasks.append(FewShotTask(adapt, test))
    return tasks


def fewshot_scores(delta: np.ndarray, tasks: list[FewShotTask], adapter: MAPLogisticRegression
                   ) -> tuple[float, float]:
    """(accuracy, log-likelihood per pair) of few-shot adapted weights on the tasks' test pairs.

    Accuracy is averaged per task (ties count half).
    """
    accuracies, loglik, count = [], 0.0, 0
    for task in tasks:
        w = fit_choices(adapter, delta[task.adapt])
        margin = delta[task.test] @ w
        accuracies.append(float(np.mean((margin > 0) + 0.5 * (margin == 0))))
        loglik -= float(np.logaddexp(0.0, -margin).sum())
        count += len(task.test)
    if not tasks:
        return float("nan"), float("nan")
    return float(np.mean(accuracies)), loglik / count


def population_scores(delta: np.ndarray, tasks: list[FewShotTask], mean: np.ndarray) -> float:
    """Accuracy of the prior mean alone (a one-size reward) on the same test pairs, averaged per task."""
    if not tasks:
        return float("nan")
    margins = [delta[t.test] @ mean for t in tasks]
    return float(np.mean([np.mean((m > 0) + 0.5 * (m == 0)) for m in margins]))
