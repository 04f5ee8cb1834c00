"""The numpy adapter: matches scikit-learn, honours the prior, stays finite on degenerate data."""

from __future__ import annotations

import numpy as np
import pytest
from rfm.adapt import MAPLogisticRegression, rank_queries
from sklearn.linear_model import LogisticRegression


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("C", [0.1, 1.0, 10.0])
def test_prior_none_matches_sklearn(seed, C):
    rng = np.random.default_rng(seed)
    d, m = int(rng.integers(2, 40)), int(rng.integers(5, 200))
    X = rng.normal(size=(m, d))
    y = (X @ rng.normal(size=d) + rng.normal(size=m) > 0).astype(int)
    if y.min() == y.max():
        y[0] = 1 - y[0]
    ours = MAPLogisticRegression(prior="none", C=C).fit(X, y)
    ref = LogisticRegression(C=C, fit_intercept=False, tol=1e-12, max_iter=100_000).fit(X, y)
    np.testing.assert_allclose(ours.coef_, ref.coef_[0], atol=1e-5)
    np.testing.assert_allclose(ours.predict_proba(X), ref.predict_proba(X), atol=1e-5)


def test_no_data_returns_the_prior_mean():
    mean, cov = np.array([1.0, -2.0, 0.5]), np.diag([1.0, 2.0, 3.0])
    model = MAPLogisticRegression(mean, cov).fit(np.zeros((0, 3)), np.zeros(0))
    np.testing.assert_array_equal(model.coef_, mean)
    np.testing.assert_allclose(model.covariance_, cov)


@pytest.mark.parametrize("case", ["separable", "single", "one_class", "huge"])
def test_degenerate_data_stays_finite(case):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 5))
    y = (X[:, 0] > 0).astype(float)
    if case == "single":
        X, y = X[:1], y[:1]
    elif case == "one_class":
        y = np.ones(30)
    elif case == "huge":
        X = X * 1e6
    for model in (MAPLogisticRegression(prior="none"), MAPLogisticRegression(np.zeros(5), np.eye(5))):
        model.fit(X, y)
        assert np.all(np.isfinite(model.coef_)) and np.all(np.isfinite(model.covariance_))
        assert np.all(np.isfinite(model.predict_proba(X)))


def test_partial_fit_equals_fit_on_everything():
    rng = np.random.default_rng(1)
    X, mean = rng.normal(size=(40, 6)), rng.normal(size=6)
    y = (rng.random(40) < 0.7).astype(float)
    a = MAPLogisticRegression(mean, np.eye(6) * 0.5).fit(X[:10], y[:10]).partial_fit(X[10:], y[10:])
    b = MAPLogisticRegression(mean, np.eye(6) * 0.5).fit(X, y)
    np.testing.assert_allclose(a.coef_, b.coef_, atol=1e-9)
    assert a.n_samples_ == 40


def test_prior_pulls_towards_its_mean():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(5, 4))
    y = np.ones(5)
    mean = np.array([3.0, 0.0, 0.0, 0.0])
    tight = MAPLogisticRegression(mean, np.eye(4) * 1e-4).fit(X, y)
    loose = MAPLogisticRegression(mean, np.eye(4) * 1e4).fit(X, y)
    assert np.linalg.norm(tight.coef_ - mean) < 1e-2 < np.linalg.norm(loose.coef_ - mean)


def test_bad_inputs_are_rejected():
    model = MAPLogisticRegression(prior="none")
    with pytest.raises(ValueError, match="NaN"):
        model.fit(np.array([[np.nan, 1.0]]), np.array([1]))
    with pytest.raises(ValueError, match="0/1"):
        model.fit(np.ones((2, 2)), np.array([2, 1]))
    with pytest.raises(ValueError, match="NaN"):  # checked by fit, as scikit-learn estimators do
        MAPLogisticRegression(np.array([np.inf]), np.eye(1)).fit(np.ones((1, 1)), np.ones(1))
    with pytest.raises(ValueError, match="needs mean and cov"):
        MAPLogisticRegression().fit(np.ones((1, 1)), np.ones(1))


def test_scikit_learn_estimator_contract():
    import warnings

    from rfm.adapt import ConvergenceWarning
    from sklearn.base import clone
    from sklearn.model_selection import cross_val_score

    rng = np.random.default_rng(3)
    X = rng.normal(size=(80, 4))
    y = (X @ np.array([1.0, -1.0, 0.5, 0.0]) + 0.3 * rng.normal(size=80) > 0).astype(int)
    model = MAPLogisticRegression(np.zeros(4), np.eye(4), max_iter=50)
    assert not hasattr(model, "coef_")  # __init__ only stores parameters
    copy = clone(model).set_params(prior_scale=2.0)
    assert copy.get_params()["prior_scale"] == 2.0 and model.get_params()["prior_scale"] == 1.0
    fitted = copy.fit(X, y)
    assert fitted.coef_.shape == (4,) and 1 <= fitted.n_iter_ < 50 and fitted.n_features_in_ == 4
    assert cross_val_score(MAPLogisticRegression(prior="none"), X, y, cv=3, scoring="accuracy").mean() > 0.8
    with pytest.warns(ConvergenceWarning):
        MAPLogisticRegression(prior="none", max_iter=1).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        MAPLogisticRegression(prior="none").fit(X * 1e4, y)  # large features converge without a warning


def test_query_choice_prefers_informative_pairs():
    mean, cov = np.array([2.0, 0.0]), np.diag([0.01, 4.0])
    candidates = np.array([[1.0, 0.0],   # along a direction we are sure about
                           [0.0, 1.0],   # along the uncertain direction, margin ~0
                           [5.0, 0.0]])  # confident and far
    assert rank_queries(candidates, mean, cov, "information")[0] == 1
    assert rank_queries(candidates, mean, cov, "uncertainty")[0] == 1
    assert rank_queries(candidates, mean, cov, "information")[-1] == 2
