"""MAP logistic regression with a Gaussian prior, by Newton's method, in numpy (scikit-learn's shape).

Minimises  sum_i log(1 + exp(-s_i x_i.w)) + 1/2 (w - mu)^T P (w - mu),  s_i = +1 / -1 for y_i = 1 / 0.
`prior="population"` takes mu and P = Sigma^-1 from the artifact's population prior (empirical
Bayes); `prior="none"` is plain L2 towards zero, P = I / C, which is scikit-learn's
LogisticRegression(C=C, fit_intercept=False). The objective is strictly convex, so Newton with a
backtracking line search converges on separable data, one example or one-class labels alike.
"""

from __future__ import annotations

import numpy as np

try:  # the gufunc behind np.linalg.solve, without its ~12 us of Python checks per call (hot path)
    from numpy.linalg import _umath_linalg

    _raw_solve = _umath_linalg.solve1
except (ImportError, AttributeError):  # pragma: no cover - other numpy layouts
    _raw_solve = None


def _solve(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if _raw_solve is not None:
        x = _raw_solve(a, b)
        if np.isfinite(x).all():
            return x
    return np.linalg.solve(a, b)


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _check_finite(name: str, array: np.ndarray) -> None:
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or inf")


class MAPLogisticRegression:
    """Logistic regression without intercept, MAP under N(mean, cov) or L2 (`prior="none"`)."""

    def __init__(self, mean: np.ndarray | None = None, cov: np.ndarray | None = None, prior: str = "population",
                 C: float = 1.0, prior_scale: float = 1.0, max_iter: int = 50, tol: float = 1e-9):
        if prior not in ("population", "none"):
            raise ValueError("prior must be 'population' or 'none'")
        if prior == "population" and (mean is None or cov is None):
            raise ValueError("prior='population' needs mean and cov")
        if C <= 0 or prior_scale <= 0:
            raise ValueError("C and prior_scale must be > 0")
        self.prior, self.C, self.prior_scale = prior, float(C), float(prior_scale)
        self.max_iter, self.tol = int(max_iter), float(tol)
        self.mean = None if mean is None else np.asarray(mean, dtype=np.float64)
        self.cov = None if cov is None else np.asarray(cov, dtype=np.float64)
        self.n_features_in_: int | None = None
        self._X = np.zeros((0, 0))
        self._y = np.zeros(0)
        if self.mean is not None:
            self._setup(len(self.mean))

    def _setup(self, d: int) -> None:
        self.n_features_in_ = d
        if self.prior == "population":
            assert self.mean is not None and self.cov is not None
            _check_finite("prior mean", self.mean)
            _check_finite("prior covariance", self.cov)
            if self.mean.shape != (d,) or self.cov.shape != (d, d):
                raise ValueError(f"prior shapes {self.mean.shape}, {self.cov.shape} do not match d={d}")
            self.mu_ = self.mean.copy()
            self.precision_ = np.linalg.inv(self.cov * self.prior_scale)
            self.precision_ = 0.5 * (self.precision_ + self.precision_.T)
        else:
            self.mu_ = np.zeros(d) if self.mean is None else self.mean.copy() * 0.0
            self.precision_ = np.eye(d) / self.C
        self.coef_ = self.mu_.copy()
        self._cov_cache: np.ndarray | None = None
        self._X = np.zeros((0, d))
        self._y = np.zeros(0)

    def _validate(self, X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        X = np.atleast_2d(np.asarray(X, dtype=np.float64))
        y = np.asarray(y, dtype=np.float64).reshape(-1)
        if X.shape[0] != y.shape[0]:
            raise ValueError(f"X has {X.shape[0]} rows but y has {y.shape[0]}")
        _check_finite("X", X)
        if not np.all((y == 0) | (y == 1)):
            raise ValueError("y must hold 0/1 labels")
        if self.n_features_in_ is None:
            self._setup(X.shape[1])
        elif X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, expected {self.n_features_in_}")
        return X, y

    def fit(self, X: np.ndarray, y: np.ndarray) -> MAPLogisticRegression:
        """Fit from scratch on (X, y); m = 0 rows gives the prior mean."""
        X, y = self._validate(X, y)
        self._X, self._y = X, y
        self._newton(self.mu_.copy())
        return self

    def partial_fit(self, X: np.ndarray, y: np.ndarray) -> MAPLogisticRegression:
        """Add examples and refit exactly (warm start); the objective stays the full-data MAP."""
        X, y = self._validate(X, y)
        self._X = np.vstack([self._X, X])
        self._y = np.concatenate([self._y, y])
        self._newton(self.coef_.copy())
        return self

    def _newton(self, w: np.ndarray) -> None:
        """Damped Newton from `w`; X @ w is carried between steps (this loop is the hot path)."""
        X, y, P, mu = self._X, self._y, self.precision_, self.mu_
        self._cov_cache = None
        if not len(X):
            self.coef_ = w
            return
        sign = 2.0 * y - 1.0
        z = X @ w
        diff = w - mu
        f = float(np.logaddexp(0.0, -sign * z).sum() + 0.5 * diff @ P @ diff)
        for _ in range(self.max_iter):
            p = sigmoid(z)
            grad = X.T @ (p - y) + P @ diff
            if np.abs(grad).max() < self.tol:
                break
            hessian = (X.T * (p * (1.0 - p))) @ X + P
            step = _solve(hessian, grad)
            decrement = float(grad @ step)
            t = 1.0
            while True:
                candidate = w - t * step
                z_new = X @ candidate
                diff_new = candidate - mu
                f_new = float(np.logaddexp(0.0, -sign * z_new).sum() + 0.5 * diff_new @ P @ diff_new)
                if f_new <= f - 1e-4 * t * decrement or t < 1e-10:
                    break
                t *= 0.5
            w, z, diff, f = candidate, z_new, diff_new, f_new
            if decrement < 1e-20:
                break
        self.coef_ = w

    @property
    def covariance_(self) -> np.ndarray:
        """The Laplace posterior covariance at coef_ (the prior's when there is no data)."""
        if self._cov_cache is None:
            hessian = self.precision_
            if len(self._X):
                p = sigmoid(self._X @ self.coef_)
                hessian = (self._X.T * (p * (1.0 - p))) @ self._X + hessian
            self._cov_cache = np.linalg.inv(hessian)
        return self._cov_cache

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        return np.atleast_2d(np.asarray(X, dtype=np.float64)) @ self.coef_

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        p = sigmoid(self.decision_function(X))
        return np.column_stack([1.0 - p, p])

    def predict(self, X: np.ndarray) -> np.ndarray:
        return (self.decision_function(X) > 0).astype(np.int64)

    @property
    def n_samples_(self) -> int:
        return len(self._y)


def fit_choices(model: MAPLogisticRegression, deltas: np.ndarray) -> np.ndarray:
    """A user's w from their choices, each row phi(chosen) - phi(rejected); the prior mean for none.

    Every choice is a positive example of its own difference (label 1): the one way rfm adapts a user.
    """
    deltas = np.atleast_2d(np.asarray(deltas, dtype=np.float64))
    return model.fit(deltas, np.ones(len(deltas))).coef_.copy()
