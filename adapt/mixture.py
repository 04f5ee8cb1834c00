"""MAP logistic regression under a mixture prior: one Gaussian per training rater's weight row.

People fall into taste groups; one Gaussian around the population mean fits such a population badly
while a user has made few choices (it pulls everyone to the middle of the groups). Here the prior is
an equal mixture of N(r_k, scale * Sigma) over the training raters' rows r_k, Sigma the shipped prior's
covariance. Each component's MAP fit is found by Newton's method, all components at once in numpy, and
the user's w is the fits' average weighted by each component's Laplace evidence (its posterior
probability given the choices). `benchmarks/head_sweep.py` and `benchmarks/mixture_prior.py` measure it.
"""

from __future__ import annotations

import warnings

import numpy as np
from rfm.adapt.logistic import ConvergenceWarning, LinearClassifierMixin, check_examples, sigmoid

MIXTURE_SCALE = 0.3  # each component's covariance, as a fraction of the shipped prior's (measured: head_sweep.md)


def _hessians(curvature: np.ndarray, X: np.ndarray, P: np.ndarray) -> np.ndarray:
    """X^T diag(c_k) X + P for each component's curvature row c_k: (k, d, d), one batched matmul."""
    return (X.T[None] * curvature[:, None, :]) @ X + P


class MixtureMAPLogisticRegression(LinearClassifierMixin):
    """Logistic regression without intercept, w the posterior mean under an equal mixture of Gaussian priors.

    `rows` (k, d): the components' means (the training raters' weight rows); `cov` (d, d): the shipped
    prior's covariance, each component's being `scale * cov`. `fit(X, y)` sets `coef_` (the mixture
    posterior mean), `covariance_` (its covariance: the components' Laplace covariances and the spread
    of their fits), `responsibilities_` (k,), `n_iter_` and `n_features_in_`; scikit-learn's shape.
    """

    def __init__(self, rows: np.ndarray, cov: np.ndarray, scale: float = MIXTURE_SCALE, max_iter: int = 50,
                 tol: float = 1e-9):
        self.rows = rows
        self.cov = cov
        self.scale = scale
        self.max_iter = max_iter
        self.tol = tol

    def get_params(self, deep: bool = True) -> dict:
        return {"rows": self.rows, "cov": self.cov, "scale": self.scale, "max_iter": self.max_iter, "tol": self.tol}

    def _prior(self) -> tuple[np.ndarray, np.ndarray]:
        """(rows, precision), validated; the precision is inverted once."""
        cached = self.__dict__.get("_prior_cache")
        if cached is not None and cached[0] == (id(self.rows), id(self.cov), self.scale):
            return cached[1], cached[2]
        rows, cov = np.atleast_2d(np.asarray(self.rows, dtype=np.float64)), np.asarray(self.cov, dtype=np.float64)
        if not (len(rows) and np.all(np.isfinite(rows)) and np.all(np.isfinite(cov))):
            raise ValueError("mixture prior needs finite rater rows and covariance")
        if cov.shape != (rows.shape[1], rows.shape[1]):
            raise ValueError(f"covariance {cov.shape} does not match rows of width {rows.shape[1]}")
        if not self.scale > 0:
            raise ValueError("scale must be > 0")
        precision = np.linalg.inv(cov * self.scale)
        precision = 0.5 * (precision + precision.T)
        self._prior_cache = ((id(self.rows), id(self.cov), self.scale), rows, precision)
        return rows, precision

    def fit(self, X: np.ndarray, y: np.ndarray) -> MixtureMAPLogisticRegression:
        """Fit every component on (X, y) and weigh them by their evidence; no rows gives the mixture's mean."""
        rows, P = self._prior()
        X, y = check_examples(np.reshape(X, (-1, rows.shape[1])), y)
        self.n_features_in_, self.classes_ = rows.shape[1], np.array([0, 1])
        signed = X * (2.0 * y - 1.0)[:, None]  # every example as a positive one of its signed row
        fits, hessians, objective = self._newton(signed, rows, P)
        # log p(choices | component) by Laplace, up to terms every component shares (one covariance)
        log_evidence = -objective - 0.5 * np.linalg.slogdet(hessians)[1]
        weights = np.exp(log_evidence - log_evidence.max())
        self.responsibilities_ = weights / weights.sum()
        self.coef_ = self.responsibilities_ @ fits
        spread = fits - self.coef_
        self.covariance_ = (np.einsum("k,kij->ij", self.responsibilities_, np.linalg.inv(hessians))
                            + (spread.T * self.responsibilities_) @ spread)
        return self

    def _newton(self, X: np.ndarray, rows: np.ndarray, P: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Damped Newton for all k components at once: (fits (k, d), Hessians (k, d, d), objectives (k,))."""
        W = rows.copy()

        def objectives(W: np.ndarray, at: np.ndarray | slice = slice(None)) -> np.ndarray:
            diff = W - rows[at]
            return np.logaddexp(0.0, -(W @ X.T)).sum(1) + 0.5 * ((diff @ P) * diff).sum(1)

        f = objectives(W)
        self.n_iter_, converged = 0, not len(X)
        for _ in range(self.max_iter if len(X) else 0):
            p = sigmoid(-(W @ X.T))  # (k, m): the probability each component gives the other answer
            grad = -(p @ X) + (W - rows) @ P
            if np.abs(grad).max() < self.tol:
                converged = True
                break
            self.n_iter_ += 1
            hessians = _hessians(p * (1.0 - p), X, P)
            step = np.linalg.solve(hessians, grad[..., None])[..., 0]
            decrement = np.einsum("ki,ki->k", grad, step)
            if decrement.max() <= 1e-15 * max(1.0, float(np.abs(f).max())):
                converged = True
                break
            t = np.ones(len(W))
            candidate = W - step
            f_new = objectives(candidate)
            for _ in range(34):  # backtracking, only for the components whose step was too long; to t ~ 1e-10
                short = np.flatnonzero(f_new > f - 1e-4 * t * decrement)
                if not len(short):
                    break
                t[short] *= 0.5
                candidate[short] = W[short] - t[short, None] * step[short]
                f_new[short] = objectives(candidate[short], short)
            W, f = candidate, f_new
        if not converged:
            warnings.warn(f"MixtureMAPLogisticRegression stopped after max_iter={self.max_iter} Newton steps before "
                          f"the gradient fell below tol={self.tol:g}", ConvergenceWarning, stacklevel=3)
        p = sigmoid(W @ X.T)
        hessians = _hessians(p * (1.0 - p), X, P)
        return W, hessians, f
