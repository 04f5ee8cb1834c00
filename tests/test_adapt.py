"""The numpy adapter: matches scikit-learn, honours the prior, stays finite on degenerate data."""

from __future__ import annotations

import numpy as np
import pytest
from rfm.adapt import (
    MAPLogisticRegression,
    MixtureMAPLogisticRegression,
    UserAdapter,
    choose_questions,
    rank_queries,
)
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


def test_questions_are_asked_one_at_a_time_given_the_answers_so_far():
    adapter = UserAdapter({"mean": np.zeros(2), "cov": np.diag([4.0, 4.0])})
    # three copies of one question along x, one along y: after an answer along x, y is worth more
    candidates = np.array([[2.0, 0.0], [2.0, 0.0], [2.0, 0.0], [0.0, 1.5]])
    first = rank_queries(candidates, *adapter.posterior(np.zeros((0, 2))))[0]
    order = choose_questions(adapter, candidates, 3)
    assert order[0] == first == 0 and order[1] == 3 and len(set(order)) == 3
    assert choose_questions(adapter, candidates, 10) == choose_questions(adapter, candidates, 4)  # at most all
    # earlier answers count: having answered along x already, the first question is along y
    assert choose_questions(adapter, candidates, 1, answered=np.array([[2.0, 0.0]] * 3)) == [3]
    # the sign of a row (which side was chosen) does not change what is asked
    assert choose_questions(adapter, candidates * np.array([[1], [-1], [1], [-1]]), 3) == order


def _mixture_by_hand(rows, cov, scale, X):
    """One MAPLogisticRegression per component, weighed by its Laplace evidence (the definition)."""
    fits, log_evidence = [], []
    for row in rows:
        model = MAPLogisticRegression(row, cov * scale).fit(X, np.ones(len(X)))
        diff = model.coef_ - row
        objective = np.logaddexp(0.0, -(X @ model.coef_)).sum() + 0.5 * diff @ model.precision_ @ diff
        log_evidence.append(-objective + 0.5 * np.linalg.slogdet(model.covariance_)[1])
        fits.append(model.coef_)
    weights = np.exp(np.array(log_evidence) - max(log_evidence))
    return weights / weights.sum() @ np.array(fits)


@pytest.mark.parametrize("seed", range(3))
def test_mixture_prior_matches_its_definition(seed):
    rng = np.random.default_rng(seed)
    rows = rng.normal(size=(12, 6))
    cov = np.cov(rows.T) + 0.05 * np.eye(6)
    X = rng.normal(size=(15, 6))
    model = MixtureMAPLogisticRegression(rows, cov, 0.3).fit(X, np.ones(15))
    np.testing.assert_allclose(model.coef_, _mixture_by_hand(rows, cov, 0.3, X), atol=1e-8)
    assert model.responsibilities_.shape == (12,) and abs(model.responsibilities_.sum() - 1) < 1e-12
    # labels 0 are the same choices seen the other way round
    flipped = MixtureMAPLogisticRegression(rows, cov, 0.3).fit(-X, np.zeros(15))
    np.testing.assert_allclose(flipped.coef_, model.coef_, atol=1e-10)
    empty = MixtureMAPLogisticRegression(rows, cov, 0.3).fit(np.zeros((0, 6)), np.zeros(0))
    np.testing.assert_allclose(empty.coef_, rows.mean(0), atol=1e-12)
    np.testing.assert_allclose(empty.covariance_, 0.3 * cov + np.cov(rows.T, bias=True), atol=1e-10)


def test_mixture_prior_finds_a_users_group_from_few_choices():
    """Two opposing taste groups: one Gaussian shrinks a new user towards the middle, the mixture to their group."""
    rng = np.random.default_rng(0)
    taste = np.array([2.0, 0.0, 0.0, 0.0])
    rows = np.vstack([taste + 0.1 * rng.normal(size=(10, 4)), -taste + 0.1 * rng.normal(size=(10, 4))])
    population = {"mean": rows.mean(0), "cov": np.cov(rows.T) + 0.01 * np.eye(4)}
    X = rng.normal(size=(3, 4))
    X *= np.sign(X @ taste)[:, None]  # three choices of a user from the first group
    single = UserAdapter(population, "population").fit(X)
    mixture = UserAdapter(population, "mixture", rows=rows)
    w = mixture.fit(X)
    assert mixture.estimator.responsibilities_[:10].sum() > 0.9  # measured 0.95 from three choices
    assert w @ taste / np.linalg.norm(w) / 2 > 0.9 and np.linalg.norm(w - taste) < np.linalg.norm(single - taste)
    mean, cov = mixture.posterior(X)
    np.testing.assert_allclose(mean, w) and np.testing.assert_allclose(cov, cov.T)
    assert np.all(np.linalg.eigvalsh(cov) > 0)
    np.testing.assert_allclose(mixture.fit(np.zeros((0, 4))), population["mean"])


def test_mixture_prior_needs_rows_and_finite_inputs():
    population = {"mean": np.zeros(3), "cov": np.eye(3)}
    with pytest.raises(ValueError, match="rows"):
        UserAdapter(population, "mixture")
    with pytest.raises(ValueError, match="prior must be one of"):
        UserAdapter(population, "gaussian")
    with pytest.raises(ValueError, match="does not match"):
        MixtureMAPLogisticRegression(np.zeros((2, 3)), np.eye(4)).fit(np.ones((1, 3)), np.ones(1))
    with pytest.raises(ValueError, match="NaN"):
        MixtureMAPLogisticRegression(np.zeros((2, 3)), np.eye(3)).fit(np.full((1, 3), np.nan), np.ones(1))
    with pytest.raises(ValueError, match="0/1"):
        MixtureMAPLogisticRegression(np.zeros((2, 3)), np.eye(3)).fit(np.ones((1, 3)), np.full(1, 2.0))
