"""Covariate-shift measures against closed forms and numpy/scipy references."""

import numpy as np
import pytest
from scipy import stats

from regaudit.measures import shift

from summaries import merged


def test_w1_between_gaussians_shifted_by_half_a_sigma_is_half(rng):
    before = merged(rng.normal(0.0, 2.0, size=(4000, 8)), 3)
    after = merged(rng.normal(1.0, 2.0, size=(4000, 8)), 5)
    # W1 of N(0, s) and N(0.5 s, s) is 0.5 s; scaled by s: 0.5 (sampling error ~0.01)
    assert shift.w1_scaled(before, after) == pytest.approx(0.5, abs=0.03)
    assert shift.w1_scaled(before, before) == 0.0


@pytest.mark.parametrize("sizes", [(3000, 3000), (3000, 2000)])
def test_w1_and_ks_equal_scipy(rng, sizes):
    a = rng.standard_t(4, size=(sizes[0], 1))
    b = rng.gamma(2.0, size=(sizes[1], 1))
    a[::11] = np.round(a[::11], 1)  # ties
    sa, sb = merged(a, 2), merged(b, 3)
    assert shift.w1_scaled(sa, sb) == pytest.approx(
        stats.wasserstein_distance(a.ravel(), b.ravel()) / a.std(), rel=1e-12)
    assert shift.ks_statistic(sa, sb) == pytest.approx(stats.ks_2samp(a.ravel(), b.ravel()).statistic, rel=1e-12)


def test_per_unit_mean_and_logvar_drift(rng):
    units = 6
    before = rng.normal(np.arange(units), np.linspace(0.5, 2, units), size=(300, 4, units))
    after = rng.normal(np.arange(units) + 0.3, np.linspace(1, 3, units), size=(300, 4, units))
    before[..., 2] = 0.0  # a dead unit: no scale to measure against, left out
    sb, sa = merged(before, 4), merged(after, 3)
    mu0, sd0 = before.reshape(-1, units).mean(0), before.reshape(-1, units).std(0)
    mu1, sd1 = after.reshape(-1, units).mean(0), after.reshape(-1, units).std(0)
    alive = sd0 > 0
    assert shift.mean_shift(sb, sa) == pytest.approx(np.mean(np.abs(mu1 - mu0)[alive] / sd0[alive]), rel=1e-10)
    assert shift.logvar_shift(sb, sa) == pytest.approx(np.mean(np.abs(np.log(sd1[alive] ** 2 / sd0[alive] ** 2))), rel=1e-10)


def test_drift_of_a_constant_tensor_is_nan_not_a_division_by_zero():
    constant = merged(np.ones((20, 3)), 2)
    assert np.isnan(shift.w1_scaled(constant, constant))
    assert np.isnan(shift.mean_shift(constant, constant))
    assert shift.ks_statistic(constant, constant) == 0.0


def test_unit_ks_equals_scipy_unit_by_unit(rng):
    a, b = rng.normal(size=4000), rng.normal(0.2, 1.1, size=3000)
    a[::9], b[::4] = np.round(a[::9], 1), np.round(b[::4], 1)
    a[7], b[3] = np.nan, np.inf
    a_units, b_units = rng.integers(0, 30, a.size), rng.integers(0, 30, b.size)
    a_units[a_units == 29] = 28  # unit 29 only on one side: left out
    units, statistic, pvalues = shift.unit_ks(a, b, a_units, b_units)
    assert list(units) == list(range(29))
    for unit, d, p in zip(units, statistic, pvalues):
        x = a[(a_units == unit) & np.isfinite(a)]
        y = b[(b_units == unit) & np.isfinite(b)]
        assert d == pytest.approx(stats.ks_2samp(x, y).statistic, abs=1e-15)
        en = len(x) * len(y) / (len(x) + len(y))
        assert p == pytest.approx(stats.kstwobign.sf(d * np.sqrt(en)), rel=1e-12)


def test_train_vs_validation_p_value_corrections():
    pvalues = np.array([0.001, 0.2, 0.03, 0.5, 0.004])
    assert shift.tv_p(pvalues) == pytest.approx(5 * 0.001)
    assert shift.tv_p(np.array([0.6, 0.9])) == 1.0  # 2 x 0.6, capped at 1
    adjusted = stats.false_discovery_control(pvalues)
    assert shift.tv_units_shifted(pvalues) == pytest.approx(np.mean(adjusted < 0.05))
    assert np.isnan(shift.tv_p(np.array([])))


def test_identical_train_and_validation_units_are_not_shifted(rng):
    values = rng.normal(size=5000)
    units = rng.integers(0, 10, 5000)
    _, statistic, pvalues = shift.unit_ks(values, values, units, units)
    assert np.all(statistic == 0) and np.all(pvalues == 1)
    assert shift.tv_units_shifted(pvalues) == 0.0


def test_channel_moments_merge_to_numpy_variance(rng):
    x = rng.normal(3.0, 2.0, size=(90, 5))
    parts = [shift.ChannelMoments(len(p) * np.ones(5), p.sum(0), ((p - p.mean(0)) ** 2).sum(0))
             for p in np.array_split(x, 4)]
    total = parts[0]
    for part in parts[1:]:
        total = total.merge(part)
    np.testing.assert_allclose(total.mean, x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(total.var, x.var(0), rtol=1e-12)


def test_batchnorm_variance_shift_closed_forms():
    var = np.array([1.0, 4.0, 2.0])
    assert shift.bn_var_ratio(var, var) == 1.0
    assert shift.bn_var_ratio(2 * var, var) == 2.0
    assert shift.bn_mean_offset([1.0, 2.0], [0.0, 0.0], [3.0, 3.0], 1.0) == pytest.approx(0.75)
    assert shift.bn_dropout_var_ratio(var / 0.5, var) == pytest.approx(2.0)
    assert shift.bn_dropout_var_ratio([1.0, 5.0], [1.0, 0.0]) == 1.0  # zero-variance channel left out


def test_bn_dropout_var_ratio_is_pooled_and_ignores_near_dead_channels(rng):
    """The pooled ratio against a slow numpy reference on the twin's and the inference
    pass's actual values; a near-dead channel (variance 1e-9 in inference, 1e-5 with
    Dropout on: a per-channel ratio of 10,000) leaves it at the nominal value."""
    rate = 0.25
    x = np.abs(rng.normal(size=(4000, 6))) * np.array([1.0, 2.0, 0.5, 3.0, 1.0, 1.5])
    mask = rng.random(x.shape) >= rate
    noisy = x * mask / (1 - rate)
    on, off = noisy.var(0), x.var(0)
    reference = sum(noisy[:, c].var() for c in range(6)) / sum(x[:, c].var() for c in range(6))
    assert shift.bn_dropout_var_ratio(on, off) == pytest.approx(reference, rel=1e-12)
    # closed form with equal-variance channels: (E[x^2]/(1-rate) - E[x]^2) / Var(x)
    closed = ((x**2).mean() / (1 - rate) - x.mean(0)**2).sum() / off.sum()
    assert shift.bn_dropout_var_ratio(on, off) == pytest.approx(closed, rel=0.03)
    with_dead = shift.bn_dropout_var_ratio(np.append(on, 1e-5), np.append(off, 1e-9))
    assert with_dead == pytest.approx(reference, rel=1e-12)
    per_channel_mean = np.mean(np.append(on, 1e-5) / np.append(off, 1e-9))
    assert per_channel_mean > 1000  # what the old mean of ratios reported
    assert np.isnan(shift.bn_dropout_var_ratio([1.0], [0.0]))


def test_bn_init_share_is_the_initial_values_part_of_keras_moving_average(rng):
    """Keras' update moving = m moving + (1 - m) batch_var, from 1, replayed in numpy: the
    initial value's part after n steps is m^n exactly; the measure is its median share."""
    momentum, steps = 0.99, 300
    scales = np.array([1e-4, 1e-3, 0.01, 0.5, 4.0])
    moving = np.ones_like(scales)
    for _ in range(steps):
        moving = momentum * moving + (1 - momentum) * scales * rng.uniform(0.8, 1.2, scales.size)
    expected = np.median(np.minimum(1.0, momentum**steps / moving))
    assert shift.bn_init_share(moving, momentum, steps) == pytest.approx(expected, rel=1e-12)
    # the tiny channels' moving variance is still mostly the initial value (0.049 of 1)
    assert momentum**steps / moving[0] > 0.99 and momentum**steps / moving[-1] < 0.02
    assert shift.bn_init_share([1.0, 1.0], momentum, 0) == 1.0


def test_ics_measures(rng):
    g = rng.normal(size=50)
    h = g + rng.normal(scale=0.1, size=50)
    assert shift.ics_l2(g, h) == pytest.approx(np.linalg.norm(g - h))
    assert shift.ics_cos(g, h) == pytest.approx(g @ h / np.linalg.norm(g) / np.linalg.norm(h))
    assert shift.ics_cos(g, 3 * g) == pytest.approx(1.0)
    assert np.isnan(shift.ics_cos(g, np.zeros(50)))


def test_unit_m2_merges_to_per_unit_variance(rng):
    x = rng.normal(np.arange(4), 1 + np.arange(4), size=(77, 3, 4))
    s = merged(x, 6)
    np.testing.assert_allclose(s.unit_m2 / s.unit_finite, x.reshape(-1, 4).var(0), rtol=1e-12)


def test_a_channel_without_finite_values_has_nan_moments_and_no_warning():
    import warnings

    moments = shift.ChannelMoments([0.0, 3.0], [0.0, 6.0], [0.0, 2.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mean, var = moments.mean, moments.var
    assert np.isnan(mean[0]) and np.isnan(var[0])
    assert mean[1] == 2.0 and var[1] == pytest.approx(2.0 / 3.0)
