"""A person's w from their choices: the one way rfm adapts a user (eval, runtime, benchmarks, training)."""

from __future__ import annotations

import numpy as np
from rfm.adapt.logistic import PRIORS, MAPLogisticRegression, fit_choices
from rfm.adapt.mixture import MIXTURE_SCALE, MixtureMAPLogisticRegression

ADAPTER_PRIORS = (*PRIORS, "mixture")


class UserAdapter:
    """w from feature differences phi(chosen) - phi(rejected): MAP under the population prior
    (`prior="population"`, empirical Bayes), plain L2 towards zero (`prior="none"`, the paper's), or the
    posterior mean under a mixture of Gaussians at the training raters' rows (`prior="mixture"`, which
    needs those rows: `rows`, an artifact's raters.npz).

    With no choices, or for a non-adaptive model (the one-size baseline), w is the population mean.
    The prior's precision is inverted once, not on every fit.
    """

    def __init__(self, population: dict, prior: str = "population", C: float = 1.0, prior_scale: float = 1.0,
                 adaptive: bool = True, rows: np.ndarray | None = None, mixture_scale: float = MIXTURE_SCALE):
        if prior not in ADAPTER_PRIORS:
            raise ValueError(f"prior must be one of {', '.join(ADAPTER_PRIORS)}")
        self.population, self.prior, self.adaptive = population, prior, adaptive
        if prior == "mixture":
            if rows is None:
                raise ValueError("prior='mixture' needs the training raters' weight rows")
            self.estimator = MixtureMAPLogisticRegression(rows, population["cov"], mixture_scale * prior_scale)
        else:
            self.estimator = MAPLogisticRegression(population["mean"], population["cov"], prior=prior, C=C,
                                                   prior_scale=prior_scale)

    def fit(self, deltas: np.ndarray) -> np.ndarray:
        """The user's w from these choices (a copy of the population mean for none)."""
        if not self.adaptive or len(deltas) == 0:
            return np.array(self.population["mean"], dtype=np.float64)
        return fit_choices(self.estimator, deltas)

    def posterior(self, deltas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(mean, Laplace covariance) of w given these choices (the prior's for none)."""
        d = len(self.population["mean"])
        self.estimator.fit(np.reshape(deltas, (-1, d)), np.ones(len(deltas)))
        return self.estimator.coef_.copy(), self.estimator.covariance_
