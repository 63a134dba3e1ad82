"""Activation measures from merged streaming summaries against numpy/scipy on the full tensor."""

import numpy as np
import pytest
from scipy import stats

from regaudit.measures import activations as A

from summaries import merged


@pytest.mark.parametrize("pieces", [1, 2, 7])
def test_moments_from_merged_chunks_equal_scipy(rng, pieces):
    x = rng.gamma(2.0, 1.5, size=(97, 5, 6)).astype(np.float32) - 1.0
    s = merged(x, pieces)
    v = x.astype(np.float64).ravel()
    assert A.mean(s) == pytest.approx(np.mean(v), rel=1e-12)
    assert A.std(s) == pytest.approx(np.std(v), rel=1e-12)
    assert A.skew(s) == pytest.approx(stats.skew(v), rel=1e-10)
    assert A.kurtosis(s) == pytest.approx(stats.kurtosis(v), rel=1e-10)
    assert A.rms(s) == pytest.approx(np.sqrt(np.mean(v**2)), rel=1e-12)
    assert A.abs_mean(s) == pytest.approx(np.mean(np.abs(v)), rel=1e-12)
    assert A.minimum(s) == v.min() and A.maximum(s) == v.max()


def test_nonfinite_values_are_counted_and_left_out_of_the_rest(rng):
    x = rng.normal(size=(40, 8))
    x[3, 2], x[10, 5], x[11, 0] = np.nan, np.inf, -np.inf
    s = merged(x, 3)
    finite = x[np.isfinite(x)]
    assert A.nonfinite_frac(s) == pytest.approx(3 / x.size)
    assert A.mean(s) == pytest.approx(finite.mean(), rel=1e-12)
    assert A.std(s) == pytest.approx(finite.std(), rel=1e-12)
    assert A.quantile(s, 0.5) == pytest.approx(np.quantile(finite, 0.5), rel=1e-12)
    assert A.dead_frac(s) == 0.0


def test_constant_tensor_has_zero_std_and_undefined_shape_measures():
    s = merged(np.full((10, 4), 2.5), 2)
    assert A.std(s) == 0.0 and A.mean(s) == 2.5
    assert np.isnan(A.skew(s)) and np.isnan(A.kurtosis(s))
    assert np.isnan(stats.skew(np.full(40, 2.5)))  # the same convention as scipy


def test_zero_and_dead_fractions(rng):
    x = np.maximum(rng.normal(size=(50, 3, 3, 6)), 0.0)
    x[..., 1] = 0.0
    x[..., 4] = 1e-13  # below the dead tolerance
    s = merged(x, 4)
    assert A.zero_frac(s) == pytest.approx(np.mean(x == 0))
    assert A.dead_frac(s) == pytest.approx(2 / 6)


def test_dead_frac_counts_a_unit_alive_when_any_sample_fires():
    x = np.zeros((30, 4))
    x[17, 2] = 0.3
    assert A.dead_frac(merged(x, 3)) == pytest.approx(3 / 4)


def test_saturation_only_for_bounded_outputs(rng):
    x = 1 / (1 + np.exp(-rng.normal(scale=4, size=(64, 10))))
    s = merged(x, 3, bounds=(0.0, 1.0))
    assert A.sat_frac(s) == pytest.approx(np.mean((x <= 0.01) | (x >= 0.99)))
    assert A.sat_frac(merged(x, 3)) is None


def test_unit_mean_spread_is_std_of_unit_means(rng):
    x = rng.normal(loc=np.arange(7), size=(33, 4, 7))
    s = merged(x, 5)
    assert A.unit_mean_spread(s) == pytest.approx(np.std(x.reshape(-1, 7).mean(axis=0)), rel=1e-12)


def test_unit_std_spread_is_std_of_unit_stds(rng):
    x = rng.normal(scale=np.arange(1, 8), size=(33, 4, 7))
    x[0, 0, 3] = np.nan  # a non-finite value leaves its unit's other values
    s = merged(x, 5)
    units = x.reshape(-1, 7)
    want = np.std([np.std(u[np.isfinite(u)]) for u in units.T])
    assert A.unit_std_spread(s) == pytest.approx(want, rel=1e-12)
    assert A.unit_std_spread(merged(np.ones((10, 3)), 2)) == 0.0


def test_quantiles_and_histogram_are_exact_on_the_reservoir(rng):
    x = rng.standard_t(3, size=(20, 50))
    s = merged(x, 3)
    for name, q in (("p01", 0.01), ("p15", 0.15), ("p50", 0.5), ("p85", 0.85), ("p99", 0.99)):
        assert A.ACTIVATION_MEASURES[name](s) == np.quantile(x.ravel(), q)
    counts, edges = A.histogram(s)
    want_counts, want_edges = np.histogram(x.ravel(), bins=64, range=(x.min(), x.max()))
    np.testing.assert_array_equal(counts, want_counts)
    np.testing.assert_array_equal(edges, want_edges)
    assert counts.sum() == x.size


def test_model_summary_takes_mean_dead_and_max_nonfinite():
    values = {("a", "dead_frac"): 0.5, ("b", "dead_frac"): 0.0, ("a", "nonfinite_frac"): 0.0,
              ("b", "nonfinite_frac"): 0.25, ("a", "mean"): 3.0}
    assert A.model_summary(values) == {"dead_frac_mean": 0.25, "nonfinite_frac_max": 0.25}
