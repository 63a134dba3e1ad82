"""Activation statistics (docs/measures.md, section 1) from exact streaming summaries of a tap.

The probe pass never moves a full activation tensor to the host. For every mini-batch it
returns a handful of numbers per tapped tensor (counts, sums, central moments, per-unit
sums, a fixed reservoir of values); `TapSummary.merge` combines them exactly, and each
measure below is a small function of the merged summary whose docstring gives its formula.
Tests compare every one with numpy/scipy on the full tensor.
"""

from dataclasses import dataclass, replace
from functools import cached_property, partial

import numpy as np

from regaudit.measures.registry import (
    ACTIVATION, FRACTION, LAYER, MODEL_WIDE, UNITLESS, declare,
)
from regaudit.schema import TABLE_ACTIVATIONS

#: A unit is dead when |a| <= DEAD_TOL on every probe sample and position.
DEAD_TOL = 1e-12
#: A sigmoid/tanh output is saturated within SAT_MARGIN of its bounds.
SAT_MARGIN = 0.01
#: Output bounds of the activations whose saturation is measured.
BOUNDED_ACTIVATIONS = {"sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0), "hard_sigmoid": (0.0, 1.0)}
HISTOGRAM_BINS = 64
#: Outputs that are exactly zero below a threshold, where `dead_frac` means "units that
#: never fire": these activation functions and layer classes (where dead units arise; a
#: pooling, reshaping or Dropout layer after one only passes the same channels on).
RELU_ACTIVATIONS = frozenset({"relu", "relu6"})
RELU_LAYERS = frozenset({"ReLU", "ThresholdedReLU"})
RESERVOIR_SIZE = 65_536


@dataclass
class TapSummary:
    """Exact summaries of one tapped tensor over (part of) the probe.

    Element-wise fields count every element of the tensor (samples x positions x units);
    `mean`, `m2`, `m3`, `m4` are the mean and the sums of 2nd/3rd/4th powers of deviations
    from it, over finite elements only. Per-unit arrays run over the last axis.
    """

    count: float
    finite: float
    mean: float
    m2: float
    m3: float
    m4: float
    abs_sum: float
    min: float
    max: float
    zeros: float
    unit_finite: np.ndarray
    unit_sum: np.ndarray
    unit_maxabs: np.ndarray
    reservoir: np.ndarray
    saturated: float | None = None
    #: per-unit sum of squared deviations from the unit's own mean (finite values)
    unit_m2: np.ndarray | None = None

    @property
    def nonfinite(self):
        return self.count - self.finite

    def merge(self, other):
        """Combine two disjoint parts exactly (Chan et al. 1979; Pebay 2008, eqs. 2.1-2.3)."""
        na, nb = self.finite, other.finite
        n = na + nb
        if na == 0 or nb == 0:
            base = other if na == 0 else self
            mean, m2, m3, m4 = base.mean, base.m2, base.m3, base.m4
        else:
            delta = other.mean - self.mean
            mean = self.mean + delta * nb / n
            m2 = self.m2 + other.m2 + delta**2 * na * nb / n
            m3 = (
                self.m3 + other.m3
                + delta**3 * na * nb * (na - nb) / n**2
                + 3 * delta * (na * other.m2 - nb * self.m2) / n
            )
            m4 = (
                self.m4 + other.m4
                + delta**4 * na * nb * (na * na - na * nb + nb * nb) / n**3
                + 6 * delta**2 * (na * na * other.m2 + nb * nb * self.m2) / n**2
                + 4 * delta * (na * other.m3 - nb * self.m3) / n
            )
        saturated = None
        if self.saturated is not None and other.saturated is not None:
            saturated = self.saturated + other.saturated
        unit_m2 = None
        if self.unit_m2 is not None and other.unit_m2 is not None:
            unit_m2 = _merge_unit_m2(self, other)
        return replace(
            self,
            count=self.count + other.count,
            finite=n,
            mean=mean, m2=m2, m3=m3, m4=m4,
            abs_sum=self.abs_sum + other.abs_sum,
            min=min(self.min, other.min),
            max=max(self.max, other.max),
            zeros=self.zeros + other.zeros,
            unit_finite=self.unit_finite + other.unit_finite,
            unit_sum=self.unit_sum + other.unit_sum,
            unit_maxabs=np.maximum(self.unit_maxabs, other.unit_maxabs),
            reservoir=np.concatenate([self.reservoir, other.reservoir]),
            saturated=saturated,
            unit_m2=unit_m2,
        )

    @cached_property
    def finite_reservoir(self):
        values = np.asarray(self.reservoir, dtype=np.float64)
        return values[np.isfinite(values)]

    @cached_property
    def sorted_reservoir(self):
        """The finite reservoir values, sorted once for every comparison of this audit."""
        return np.sort(self.finite_reservoir)


def _merge_unit_m2(a, b):
    """Chan et al.'s update, unit by unit: M2 = M2a + M2b + delta^2 na nb / n."""
    na, nb = np.asarray(a.unit_finite, np.float64), np.asarray(b.unit_finite, np.float64)
    n = na + nb
    with np.errstate(invalid="ignore", divide="ignore"):
        delta = np.asarray(b.unit_sum) / nb - np.asarray(a.unit_sum) / na
        cross = np.where((na > 0) & (nb > 0), delta**2 * na * nb / n, 0.0)
    return np.asarray(a.unit_m2) + np.asarray(b.unit_m2) + cross


def _ratio(numerator, denominator):
    return float(numerator / denominator) if denominator > 0 else float("nan")


def mean(s):
    """mean = sum(x) / n over the finite elements."""
    return float(s.mean) if s.finite else float("nan")


def std(s):
    """std = sqrt(M2 / n), the population standard deviation (ddof=0) of finite elements."""
    return float(np.sqrt(max(s.m2, 0.0) / s.finite)) if s.finite else float("nan")


def minimum(s):
    """min over the finite elements."""
    return float(s.min) if s.finite else float("nan")


def maximum(s):
    """max over the finite elements."""
    return float(s.max) if s.finite else float("nan")


def abs_mean(s):
    """abs_mean = sum(|x|) / n over the finite elements."""
    return _ratio(s.abs_sum, s.finite)


def rms(s):
    """rms = sqrt(sum(x^2) / n) = sqrt(M2 / n + mean^2) over the finite elements."""
    return float(np.sqrt(max(s.m2, 0.0) / s.finite + s.mean**2)) if s.finite else float("nan")


def skew(s):
    """skew = (M3 / n) / (M2 / n)^(3/2), the biased sample skewness (scipy.stats.skew's
    default); NaN for a constant tensor, as scipy."""
    if not s.finite or s.m2 <= 0:
        return float("nan")
    n = s.finite
    return float((s.m3 / n) / (s.m2 / n) ** 1.5)


def kurtosis(s):
    """kurtosis = (M4 / n) / (M2 / n)^2 - 3, Fisher's excess kurtosis, biased
    (scipy.stats.kurtosis's default); NaN for a constant tensor, as scipy."""
    if not s.finite or s.m2 <= 0:
        return float("nan")
    n = s.finite
    return float((s.m4 / n) / (s.m2 / n) ** 2 - 3.0)


def quantile(s, q):
    """The q-quantile of the finite reservoir values (numpy's linear interpolation).
    p15/p50/p85 are the percentiles Ioffe & Szegedy (2015, Fig. 1) follow over training."""
    values = s.sorted_reservoir  # sorted once per audit: no partition per quantile
    if not values.size:
        return float("nan")
    position = q * (values.size - 1)
    low = int(np.floor(position))
    high = min(low + 1, values.size - 1)
    a, b, t = values[low], values[high], position - low
    # numpy's lerp: from the nearer end, so q=1 gives the maximum exactly
    return float(a + (b - a) * t if t < 0.5 else b - (b - a) * (1.0 - t))


def zero_frac(s):
    """zero_frac = #(x == 0) / #elements, exact zeros over every element."""
    return _ratio(s.zeros, s.count)


def nonfinite_frac(s):
    """nonfinite_frac = #(x is NaN or +-Inf) / #elements."""
    return _ratio(s.nonfinite, s.count)


def relu_output(activation, layer_class):
    """Whether an output with this activation function name / layer class is ReLU-like
    (exactly zero for inputs below a threshold), so that a dead unit means something."""
    return activation in RELU_ACTIVATIONS or layer_class in RELU_LAYERS


def dead_frac(s):
    """dead_frac = fraction of units (last axis) with |a| <= 1e-12 on every probe sample
    and position (a non-finite value keeps a unit alive: it is counted in nonfinite_frac)."""
    units = np.asarray(s.unit_maxabs)
    return float(np.mean(units <= DEAD_TOL)) if units.size else float("nan")


def sat_frac(s):
    """sat_frac = fraction of finite values within 0.01 of the bounds of a sigmoid (0, 1)
    or tanh (-1, 1) output; only defined for such outputs (None otherwise)."""
    if s.saturated is None:
        return None
    return _ratio(s.saturated, s.finite)


def unit_mean_spread(s):
    """unit_mean_spread = std over units (ddof=0) of the per-unit mean of finite values."""
    present = np.asarray(s.unit_finite) > 0
    if not present.any():
        return float("nan")
    unit_means = np.asarray(s.unit_sum)[present] / np.asarray(s.unit_finite)[present]
    return float(np.std(unit_means))


def unit_std_spread(s):
    """unit_std_spread = std over units (ddof=0) of the per-unit population std of finite
    values: how unevenly the units (a Dense layer's features, a Conv layer's channels) are
    scaled. Right after a BatchNormalization each unit has unit variance on the batch (times
    its gamma), so at inference a large spread there shows channels that the moving
    statistics normalize unevenly (Ioffe & Szegedy 2015, section 3)."""
    present = np.asarray(s.unit_finite) > 0
    if not present.any():
        return float("nan")
    unit_vars = np.asarray(s.unit_m2)[present] / np.asarray(s.unit_finite)[present]
    return float(np.std(np.sqrt(np.maximum(unit_vars, 0.0))))


def histogram(s, bins=HISTOGRAM_BINS):
    """64 equal-width bins over [min, max] of the finite elements of the whole tensor,
    counting the finite reservoir values. Returns (counts, edges) as np.histogram."""
    values = s.finite_reservoir
    if not values.size:
        return np.zeros(bins, dtype=np.int64), np.full(bins + 1, np.nan)
    return np.histogram(values, bins=bins, range=(float(s.min), float(s.max)))


def _quantile_doc(q):
    return (f"p{round(q * 100):02d} = the {q:g}-quantile of the finite values (of the "
            "reservoir, numpy's linear interpolation). p15/p50/p85 are the percentiles Ioffe "
            "& Szegedy (2015, Fig. 1) follow over training.")


#: measure name -> function of a TapSummary, filled by `_declare`. Order is the order of
#: the tables.
ACTIVATION_MEASURES = {}


def _declare(name, function, unit=ACTIVATION, headline=False, doc=None):
    """Declare a per-layer activation measure computed by `function` (a TapSummary ->
    float) and give it its place in ACTIVATION_MEASURES: the measure is named once."""
    declared = declare(name, table=TABLE_ACTIVATIONS, scope=LAYER, unit=unit, doc=doc or function,
                       headline=headline)
    ACTIVATION_MEASURES[declared] = function
    return declared


MEAN = _declare("mean", mean, headline=True)
STD = _declare("std", std, headline=True)
MIN = _declare("min", minimum)
MAX = _declare("max", maximum)
ABS_MEAN = _declare("abs_mean", abs_mean)
RMS = _declare("rms", rms)
SKEW = _declare("skew", skew, unit=UNITLESS)
KURTOSIS = _declare("kurtosis", kurtosis, unit=UNITLESS)
PERCENTILES = {q: _declare(f"p{round(q * 100):02d}", partial(quantile, q=q), doc=_quantile_doc(q))
               for q in (0.01, 0.15, 0.50, 0.85, 0.99)}
ZERO_FRAC = _declare("zero_frac", zero_frac, unit=FRACTION)
NONFINITE_FRAC = _declare("nonfinite_frac", nonfinite_frac, unit=FRACTION)
DEAD_FRAC = _declare("dead_frac", dead_frac, unit=FRACTION, headline=True)
SAT_FRAC = _declare("sat_frac", sat_frac, unit=FRACTION, headline=True)
UNIT_MEAN_SPREAD = _declare("unit_mean_spread", unit_mean_spread)
UNIT_STD_SPREAD = _declare("unit_std_spread", unit_std_spread)
P15, P50, P85 = PERCENTILES[0.15], PERCENTILES[0.50], PERCENTILES[0.85]

DEAD_FRAC_MEAN = declare(
    "dead_frac_mean", table=TABLE_ACTIVATIONS, scope=MODEL_WIDE, unit=FRACTION, headline=True,
    doc="dead_frac_mean = mean of `dead_frac` over the layers that have it (ReLU-family "
        "outputs and what passes them on).")
NONFINITE_FRAC_MAX = declare(
    "nonfinite_frac_max", table=TABLE_ACTIVATIONS, scope=MODEL_WIDE, unit=FRACTION,
    headline=True, doc="nonfinite_frac_max = the largest `nonfinite_frac` over the layers.")


def model_summary(values):
    """Model-level headline numbers from {(layer, measure): value} of one audit:
    `dead_frac_mean` (mean of dead_frac over layers) and `nonfinite_frac_max`."""
    out = {}
    dead = [v for (_, m), v in values.items() if m == DEAD_FRAC and np.isfinite(v)]
    nonfinite = [v for (_, m), v in values.items() if m == NONFINITE_FRAC and np.isfinite(v)]
    if dead:
        out[DEAD_FRAC_MEAN] = float(np.mean(dead))
    if nonfinite:
        out[NONFINITE_FRAC_MAX] = float(np.max(nonfinite))
    return out
