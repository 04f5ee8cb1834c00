"""MAP logistic regression with a Gaussian prior, by Newton's method, in numpy (scikit-learn's shape).

Minimises  sum_i log(1 + exp(-s_i x_i.w)) + 1/2 (w - mu)^T P (w - mu),  s_i = +1 / -1 for y_i = 1 / 0.
`prior="population"` takes mu and P = Sigma^-1 from the artifact's population prior (empirical
Bayes); `prior="none"` is plain L2 towards zero, P = I / C, which is scikit-learn's
LogisticRegression(C=C, fit_intercept=False). The objective is strictly convex, so Newton with a
backtracking line search converges on separable data, one example or one-class labels alike.
"""

from __future__ import annotations

import warnings

import numpy as np

PRIORS = ("population", "none")


class ConvergenceWarning(UserWarning):
    """Newton's method stopped at max_iter before the gradient fell below tol (scikit-learn's name)."""


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _check_finite(name: str, array: np.ndarray) -> None:
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or inf")


def check_examples(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(X, y) as float64, finite, with as many rows as labels and 0/1 labels; ValueError otherwise."""
    X = np.atleast_2d(np.asarray(X, dtype=np.float64))
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if X.shape[0] != y.shape[0]:
        raise ValueError(f"X has {X.shape[0]} rows but y has {y.shape[0]}")
    _check_finite("X", X)
    if not np.all((y == 0) | (y == 1)):
        raise ValueError("y must hold 0/1 labels")
    return X, y


class LinearClassifierMixin:
    """decision_function / predict_proba / predict of a logistic model without intercept, from `coef_`."""

    coef_: np.ndarray

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        return np.atleast_2d(np.asarray(X, dtype=np.float64)) @ self.coef_

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        p = sigmoid(self.decision_function(X))
        return np.column_stack([1.0 - p, p])

    def predict(self, X: np.ndarray) -> np.ndarray:
        return (self.decision_function(X) > 0).astype(np.int64)


class MAPLogisticRegression(LinearClassifierMixin):
    """Logistic regression without intercept, MAP under N(mean, cov) or L2 (`prior="none"`).

    A scikit-learn estimator: `__init__` only stores its parameters (`get_params`, `set_params` and
    `sklearn.base.clone` work), `fit` validates them and sets `coef_`, `n_iter_`, `mu_`,
    `precision_` and `n_features_in_`, and warns with `ConvergenceWarning` when it stops at max_iter.
    """

    _PARAMS = ("mean", "cov", "prior", "C", "prior_scale", "max_iter", "tol")

    def __init__(self, mean: np.ndarray | None = None, cov: np.ndarray | None = None, prior: str = "population",
                 C: float = 1.0, prior_scale: float = 1.0, max_iter: int = 50, tol: float = 1e-9):
        self.mean = mean
        self.cov = cov
        self.prior = prior
        self.C = C
        self.prior_scale = prior_scale
        self.max_iter = max_iter
        self.tol = tol

    # -- scikit-learn's parameter protocol -------------------------------------------------------
    def get_params(self, deep: bool = True) -> dict:
        return {name: getattr(self, name) for name in self._PARAMS}

    def set_params(self, **params) -> MAPLogisticRegression:
        for name, value in params.items():
            if name not in self._PARAMS:
                raise ValueError(f"invalid parameter {name!r} for MAPLogisticRegression")
            setattr(self, name, value)
        self.__dict__.pop("_prior_cache", None)
        return self

    def __sklearn_tags__(self):
        """A binary classifier, for scikit-learn's model selection (imported lazily: the runtime never needs it)."""
        from sklearn.utils import ClassifierTags, Tags, TargetTags

        return Tags(estimator_type="classifier", target_tags=TargetTags(required=True),
                    classifier_tags=ClassifierTags(multi_class=False))

    def __repr__(self) -> str:
        shown = {k: v for k, v in self.get_params().items() if k not in ("mean", "cov")}
        return "MAPLogisticRegression(" + ", ".join(f"{k}={v!r}" for k, v in shown.items()) + ")"

    def _prior_for(self, d: int) -> tuple[np.ndarray, np.ndarray]:
        """(mu, precision) of the prior in d dimensions, validated; inverted once per parameter set."""
        key = (d, id(self.mean), id(self.cov), self.prior, self.C, self.prior_scale)
        cached = self.__dict__.get("_prior_cache")
        if cached is not None and cached[0] == key:
            return cached[1], cached[2]
        if self.prior not in PRIORS:
            raise ValueError("prior must be 'population' or 'none'")
        if not (self.C > 0 and self.prior_scale > 0):
            raise ValueError("C and prior_scale must be > 0")
        if self.prior == "population":
            if self.mean is None or self.cov is None:
                raise ValueError("prior='population' needs mean and cov")
            mean, cov = np.asarray(self.mean, dtype=np.float64), np.asarray(self.cov, dtype=np.float64)
            _check_finite("prior mean", mean)
            _check_finite("prior covariance", cov)
            if mean.shape != (d,) or cov.shape != (d, d):
                raise ValueError(f"prior shapes {mean.shape}, {cov.shape} do not match d={d}")
            precision = np.linalg.inv(cov * self.prior_scale)
            mu, precision = mean.copy(), 0.5 * (precision + precision.T)
        else:
            mu, precision = np.zeros(d), np.eye(d) / self.C
        self._prior_cache = (key, mu, precision)
        return mu, precision

    def _validate(self, X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        X, y = check_examples(X, y)
        if getattr(self, "n_features_in_", None) not in (None, X.shape[1]):
            raise ValueError(f"X has {X.shape[1]} features, expected {self.n_features_in_}")
        return X, y

    def fit(self, X: np.ndarray, y: np.ndarray) -> MAPLogisticRegression:
        """Fit from scratch on (X, y); m = 0 rows gives the prior mean."""
        self.n_features_in_ = None
        X, y = self._validate(X, y)
        self.n_features_in_ = X.shape[1]
        self.classes_ = np.array([0, 1])
        self.mu_, self.precision_ = self._prior_for(X.shape[1])
        self._X, self._y = X, y
        self._newton(self.mu_.copy())
        return self

    def partial_fit(self, X: np.ndarray, y: np.ndarray) -> MAPLogisticRegression:
        """Add examples and refit exactly (warm start); the objective stays the full-data MAP."""
        if not hasattr(self, "coef_"):
            return self.fit(X, y)
        X, y = self._validate(X, y)
        self._X = np.vstack([self._X, X])
        self._y = np.concatenate([self._y, y])
        self._newton(self.coef_.copy())
        return self

    def _newton(self, w: np.ndarray) -> None:
        """Damped Newton from `w`; X @ w is carried between steps (this loop is the hot path)."""
        X, y, P, mu = self._X, self._y, self.precision_, self.mu_
        self._cov_cache: np.ndarray | None = None
        self.n_iter_ = 0
        if not len(X):
            self.coef_ = w
            return
        sign = 2.0 * y - 1.0
        z = X @ w
        diff = w - mu
        f = float(np.logaddexp(0.0, -sign * z).sum() + 0.5 * diff @ P @ diff)
        converged = False
        for _ in range(self.max_iter):
            p = sigmoid(z)
            grad = X.T @ (p - y) + P @ diff
            if np.abs(grad).max() < self.tol:
                converged = True
                break
            self.n_iter_ += 1
            hessian = (X.T * (p * (1.0 - p))) @ X + P
            step = np.linalg.solve(hessian, grad)
            decrement = float(grad @ step)
            if decrement <= 1e-15 * max(1.0, abs(f)):  # the Newton decrement: at the optimum to float precision
                converged = True
                break
            t = 1.0
            while True:
                candidate = w - t * step
                z_new = X @ candidate
                diff_new = candidate - mu
                f_new = float(np.logaddexp(0.0, -sign * z_new).sum() + 0.5 * diff_new @ P @ diff_new)
                if f_new <= f - 1e-4 * t * decrement or t < 1e-10:
                    break
                t *= 0.5
            if t < 1e-10:  # no step lowers the objective: numerically converged
                converged = True
                break
            w, z, diff, f = candidate, z_new, diff_new, f_new
        self.coef_ = w
        if not converged:
            warnings.warn(f"MAPLogisticRegression stopped after max_iter={self.max_iter} Newton steps before the "
                          f"gradient fell below tol={self.tol:g}", ConvergenceWarning, stacklevel=3)

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

    @property
    def n_samples_(self) -> int:
        return len(self._y)


def fit_choices(model: MAPLogisticRegression, deltas: np.ndarray) -> np.ndarray:
    """A user's w from their choices, each row phi(chosen) - phi(rejected); the prior mean for none.

    Every choice is a positive example of its own difference (label 1): the one way rfm adapts a user.
    """
    deltas = np.atleast_2d(np.asarray(deltas, dtype=np.float64))
    return model.fit(deltas, np.ones(len(deltas))).coef_.copy()
