"""Covariate-shift measures (docs/measures.md, section 2) from the probe pass's summaries.

Drift compares one tap at two audits (Ioffe & Szegedy 2015), train-vs-validation compares
the training and the validation probe at one audit, and the BatchNormalization measures
compare what a BN layer sees on the probe with the moving statistics it uses at inference
(Li, Chen, Hu & Yang 2019). Every function takes `regaudit.measures.activations.TapSummary` objects
(or per-channel moments) and is tested against numpy/scipy on the full tensors.
"""

import numpy as np
from scipy import stats

from regaudit.measures.batchnorm_lag import initial_weight
from regaudit.measures.registry import (
    COSINE, FRACTION, LAYER, MODEL_WIDE, PROBABILITY, RATIO, STATISTIC, STD_UNITS, UNITLESS,
    declare,
)
from regaudit.schema import TABLE_SHIFT

#: Units whose reference standard deviation is at most this are left out of the per-unit
#: drift averages (a dead unit has no scale to measure a shift against).
MIN_STD = 1e-12
#: False-discovery rate for `tv_units_shifted`.
FDR = 0.05


def _std(summary):
    return float(np.sqrt(summary.m2 / summary.finite)) if summary.finite else float("nan")


def wasserstein_sorted(a, b):
    """W1 between the empirical distributions of two sorted samples; for equal sizes the
    mean absolute difference of the order statistics (exact), else scipy's."""
    if a.size == b.size:
        return float(np.mean(np.abs(a - b)))
    return float(stats.wasserstein_distance(a, b))


def ks_sorted(a, b):
    """The two-sample KS statistic sup |F_a - F_b| of two sorted samples, as scipy's
    ks_2samp computes it; the stable argsort of the two sorted runs is a linear merge,
    and the ECDFs are compared after the last of equal values."""
    both = np.concatenate([a, b])
    order = np.argsort(both, kind="stable")
    from_a = order < a.size
    gap = np.cumsum(from_a) / a.size - np.cumsum(~from_a) / b.size
    values = both[order]
    last_of_tie = np.r_[values[1:] != values[:-1], True]
    return float(np.max(np.abs(gap[last_of_tie])))


def w1_scaled(reference, current):
    """W1(reference, current) / std(reference): the Wasserstein-1 distance between the two
    tensors' value distributions (their reservoir values), in units of the reference's
    standard deviation (scale-free). NaN when the reference is constant or empty."""
    a, b = reference.sorted_reservoir, current.sorted_reservoir
    scale = _std(reference)
    if not a.size or not b.size or not scale > MIN_STD:
        return float("nan")
    return wasserstein_sorted(a, b) / scale


def ks_statistic(reference, current):
    """The two-sample Kolmogorov-Smirnov statistic between the reservoir values."""
    a, b = reference.sorted_reservoir, current.sorted_reservoir
    if not a.size or not b.size:
        return float("nan")
    return ks_sorted(a, b)


def unit_moments(summary):
    """(per-unit mean, per-unit population std) over finite values; NaN for empty units."""
    count = np.asarray(summary.unit_finite, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.asarray(summary.unit_sum) / count
        stds = np.sqrt(np.asarray(summary.unit_m2) / count)
    return means, stds


def mean_shift(reference, current):
    """drift_mean = mean over units of |mu_t - mu_ref| / sigma_ref, over the units whose
    reference std exceeds 1e-12 (NaN when there are none)."""
    mu_ref, sigma_ref = unit_moments(reference)
    mu_now, _ = unit_moments(current)
    keep = sigma_ref > MIN_STD
    if not keep.any():
        return float("nan")
    return float(np.mean(np.abs(mu_now[keep] - mu_ref[keep]) / sigma_ref[keep]))


def logvar_shift(reference, current):
    """drift_logvar = mean over units of |log(sigma_t^2 / sigma_ref^2)|, over the units
    whose std exceeds 1e-12 at both audits (NaN when there are none)."""
    _, sigma_ref = unit_moments(reference)
    _, sigma_now = unit_moments(current)
    keep = (sigma_ref > MIN_STD) & (sigma_now > MIN_STD)
    if not keep.any():
        return float("nan")
    return float(np.mean(np.abs(2.0 * np.log(sigma_now[keep] / sigma_ref[keep]))))


def _declare(name, doc, unit, headline=False, scope=LAYER):
    return declare(name, table=TABLE_SHIFT, scope=scope, unit=unit, doc=doc, headline=headline)


DRIFT_W1 = _declare("drift_w1", w1_scaled, STD_UNITS, headline=True)
DRIFT_KS = _declare("drift_ks", ks_statistic, STATISTIC)
DRIFT_MEAN = _declare("drift_mean", mean_shift, STD_UNITS)
DRIFT_LOGVAR = _declare("drift_logvar", logvar_shift, UNITLESS)
#: drift measure name -> function(reference, current), against the previous audit
DRIFT_MEASURES = {DRIFT_W1: w1_scaled, DRIFT_KS: ks_statistic, DRIFT_MEAN: mean_shift,
                  DRIFT_LOGVAR: logvar_shift}
#: drift measure name -> its twin against the first audit (before any training step when
#: the audit runs at `on_train_begin`)
FROM_START = {
    name: _declare(f"{name}_from_start", f"`{name}` between the first audit and this one.",
                   STATISTIC if name == DRIFT_KS else UNITLESS if name == DRIFT_LOGVAR else STD_UNITS)
    for name in DRIFT_MEASURES}
DRIFT_W1_MEAN = _declare("drift_w1_mean", "drift_w1_mean = mean of `drift_w1` over the layers.",
                         STD_UNITS, headline=True, scope=MODEL_WIDE)
TV_W1 = _declare("tv_w1", "tv_w1 = W1(training probe, validation probe) / std(training "
                 "probe) at the same audit: the Wasserstein-1 distance of `drift_w1` between "
                 "the training and the validation probe (dataset shift at each layer).",
                 STD_UNITS, headline=True)
TV_KS = _declare("tv_ks", "tv_ks = the two-sample Kolmogorov-Smirnov statistic between the "
                 "training and the validation probe's values at the same audit.", STATISTIC)


def unit_ks(a, b, a_units, b_units):
    """Per-unit two-sample KS statistics and asymptotic p-values between values `a` and
    `b` whose units are `a_units` and `b_units`, all units at once. The statistic equals
    `scipy.stats.ks_2samp(a[a_units == u], b[b_units == u]).statistic` for every unit u
    with at least two finite values on each side; the p-value is the limiting Kolmogorov
    distribution's, `scipy.stats.kstwobign.sf(D * sqrt(m n / (m + n)))` (vectorized;
    scipy's finite-n `kstwo` runs a Python loop per unit). Returns (units, D, p)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    a_units, b_units = np.asarray(a_units), np.asarray(b_units)
    keep_a, keep_b = np.isfinite(a), np.isfinite(b)
    a, a_units, b, b_units = a[keep_a], a_units[keep_a], b[keep_b], b_units[keep_b]
    na = np.bincount(a_units, minlength=max(a_units.max(initial=0), b_units.max(initial=0)) + 1)
    nb = np.bincount(b_units, minlength=na.size)
    valid = (na >= 2) & (nb >= 2)
    a, a_units = a[valid[a_units]], a_units[valid[a_units]]
    b, b_units = b[valid[b_units]], b_units[valid[b_units]]
    if not a.size:
        return np.zeros(0, int), np.zeros(0), np.zeros(0)
    values = np.concatenate([a, b])
    units = np.concatenate([a_units, b_units])
    from_a = np.concatenate([np.ones(a.size), np.zeros(b.size)])
    # sorted by unit, then value: a plain argsort of the values (the order inside ties
    # does not matter: the ECDFs are compared after the last of equal values), then a
    # stable sort by unit (a radix sort for 16-bit unit ids): about twice lexsort's speed
    order = np.argsort(values)
    by_unit = units[order]
    by_unit = by_unit.astype(np.uint16) if units.max(initial=0) < 2**16 else by_unit
    order = order[np.argsort(by_unit, kind="stable")]
    values, units, from_a = values[order], units[order], from_a[order]
    starts = np.flatnonzero(np.r_[True, units[1:] != units[:-1]])
    cum_a, cum_b = np.cumsum(from_a), np.cumsum(1.0 - from_a)
    base_a = np.repeat(np.r_[0.0, cum_a][starts], np.diff(np.r_[starts, units.size]))
    base_b = np.repeat(np.r_[0.0, cum_b][starts], np.diff(np.r_[starts, units.size]))
    ecdf_gap = np.abs((cum_a - base_a) / na[units] - (cum_b - base_b) / nb[units])
    # the ECDFs are compared only after the last of equal values (ties)
    last_of_tie = np.r_[(values[1:] != values[:-1]) | (units[1:] != units[:-1]), True]
    statistic = np.maximum.reduceat(np.where(last_of_tie, ecdf_gap, 0.0), starts)
    unit_ids = units[starts]
    m, n = na[unit_ids].astype(np.float64), nb[unit_ids].astype(np.float64)
    pvalues = np.clip(stats.kstwobign.sf(statistic * np.sqrt(m * n / (m + n))), 0.0, 1.0)
    return unit_ids, statistic, pvalues


def unit_pvalues(train, val, train_units, val_units):
    """Per-unit two-sample KS p-values (asymptotic) between the training and the validation
    probe's reservoir values (`*_units`: the unit of each reservoir value); units with
    fewer than two finite values on either side are left out."""
    return unit_ks(train.reservoir, val.reservoir, train_units, val_units)[2]


def tv_p(pvalues):
    """tv_p = min(1, m * min_u p_u): the Bonferroni-corrected p-value of the hypothesis
    that no unit's distribution differs between training and validation probe (m units).
    Reservoir values of one conv channel share samples, so this is optimistic for conv
    layers; for Dense layers each sample gives one value per unit."""
    pvalues = np.asarray(pvalues)
    if not pvalues.size:
        return float("nan")
    return float(min(1.0, pvalues.size * pvalues.min()))


def tv_units_shifted(pvalues, rate=FDR):
    """Fraction of units whose train-vs-validation KS test rejects at a false-discovery
    rate of 5% (Benjamini-Hochberg, `scipy.stats.false_discovery_control`)."""
    pvalues = np.asarray(pvalues)
    if not pvalues.size:
        return float("nan")
    return float(np.mean(stats.false_discovery_control(pvalues, method="bh") < rate))


def bn_var_ratio(var_observed, moving_variance):
    """bn_var_ratio = mean over channels c of Var_obs(x_c) / moving_variance_c, where x is
    the BN layer's input on the probe in inference mode (Li et al. 2019). 1 means the
    statistics BN uses at inference match what it sees."""
    return float(np.mean(np.asarray(var_observed) / np.asarray(moving_variance)))


def bn_init_share(moving_variance, momentum, steps):
    """bn_init_share = median over channels of momentum^steps / moving_variance_c (at most
    1): the share of each channel's moving variance that is still its initial value 1
    after `steps` updates (Keras' moving average: moving = m * moving + (1 - m) * batch
    variance, one update per training step). Near 0 the statistics have caught up; near 1
    the moving variance is still mostly its initial value, which happens when a channel's
    input variance is far below 1 even after momentum^steps looks small. The median
    keeps a few large channels from hiding it."""
    moving = np.asarray(moving_variance, np.float64)
    if not moving.size or not 0 <= momentum < 1:
        return float("nan")
    left = initial_weight(momentum, steps)
    with np.errstate(divide="ignore"):
        share = np.where(moving > 0, np.minimum(1.0, left / moving), 1.0)
    return float(np.median(share))


def bn_mean_offset(mean_observed, moving_mean, moving_variance, epsilon):
    """bn_mean_offset = mean over channels of |mean_obs(x_c) - moving_mean_c| /
    sqrt(moving_variance_c + eps)."""
    offset = np.abs(np.asarray(mean_observed) - np.asarray(moving_mean))
    return float(np.mean(offset / np.sqrt(np.asarray(moving_variance) + epsilon)))


#: bn_dropout_var_ratio leaves out a channel whose inference variance is below this
#: fraction of the mean channel variance (a near-dead channel): each such channel holds
#: under 0.1% of the layer's variance, and a ratio of two near-zero variances is noise.
NEGLIGIBLE_VARIANCE = 1e-3


def bn_dropout_var_ratio(var_dropout_on, var_inference):
    """bn_dropout_var_ratio = sum_c Var(x_c | upstream noise on) / sum_c Var(x_c | inference),
    pooled over the channels c whose inference variance is at least NEGLIGIBLE_VARIANCE
    (1e-3) times the mean channel variance: the variance shift that Dropout-like noise
    before BN causes between training and inference (Li et al. 2019). Pooling weighs each
    channel by its variance, so near-dead channels cannot dominate it as they dominate a
    mean of per-channel ratios (2567 against a nominal 1.33 on the seed article's third
    model). For a Dropout right before BN: exactly 1/(1-rate) for zero-mean inputs, more
    otherwise. NaN when no channel has variance."""
    on, off = np.asarray(var_dropout_on, np.float64), np.asarray(var_inference, np.float64)
    finite = np.isfinite(on) & np.isfinite(off)
    if not finite.any():
        return float("nan")
    scale = off[finite].mean()
    keep = finite & (off > max(MIN_STD**2, NEGLIGIBLE_VARIANCE * scale))
    if not keep.any():
        return float("nan")
    return float(on[keep].sum() / off[keep].sum())


class ChannelMoments:
    """Per-channel count, sum and centred sum of squares of a BN layer's input, merged
    exactly across probe mini-batches (Chan et al. 1979)."""

    def __init__(self, count, total, m2):
        self.count = np.asarray(count, np.float64)
        self.total = np.asarray(total, np.float64)
        self.m2 = np.asarray(m2, np.float64)

    def merge(self, other):
        n = self.count + other.count
        with np.errstate(invalid="ignore", divide="ignore"):
            delta = other.total / other.count - self.total / self.count
            cross = np.where((self.count > 0) & (other.count > 0),
                             delta**2 * self.count * other.count / n, 0.0)
        return ChannelMoments(n, self.total + other.total, self.m2 + other.m2 + cross)

    @property
    def mean(self):
        """Mean per channel; NaN for a channel with no finite value (an activation that
        overflowed to Inf, as in an untrained deep network in inference mode)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.total / self.count

    @property
    def var(self):
        """Population variance (ddof=0) per channel; NaN for a channel with no finite value."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.m2 / self.count


def ics_l2(gradient, moved_gradient):
    """ics_l2 = ||G - G'||_2 (Santurkar et al. 2018): how much layer i's gradient changes
    when the layers before it take one gradient step."""
    return float(np.linalg.norm(np.asarray(gradient, np.float64) - np.asarray(moved_gradient, np.float64)))


def ics_cos(gradient, moved_gradient):
    """ics_cos = <G, G'> / (||G|| ||G'||); 1 means the earlier layers' step leaves the
    direction of layer i's gradient unchanged. NaN when either gradient is zero."""
    g, h = np.asarray(gradient, np.float64), np.asarray(moved_gradient, np.float64)
    norms = np.linalg.norm(g) * np.linalg.norm(h)
    return float(np.dot(g, h) / norms) if norms > 0 else float("nan")


TV_P = _declare("tv_p", tv_p, PROBABILITY)
TV_UNITS_SHIFTED = _declare("tv_units_shifted", tv_units_shifted, FRACTION)
BN_VAR_RATIO = _declare("bn_var_ratio", bn_var_ratio, RATIO, headline=True)
BN_MEAN_OFFSET = _declare("bn_mean_offset", bn_mean_offset, STD_UNITS)
BN_INIT_SHARE = _declare("bn_init_share", bn_init_share, FRACTION)
BN_DROPOUT_VAR_RATIO = _declare("bn_dropout_var_ratio", bn_dropout_var_ratio, RATIO, headline=True)
ICS_L2 = _declare("ics_l2", ics_l2, UNITLESS)
ICS_COS = _declare("ics_cos", ics_cos, COSINE, headline=True)
