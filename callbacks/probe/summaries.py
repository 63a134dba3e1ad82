"""A tap's summary on the host, from any backend's reductions (`backend.reductions`:
`tensorflow_reductions`, `jax_reductions`, `host_reductions`, which return the same keys):
whether a batch's fast path held, the central moments from the fast path's per-unit sums,
the `regaudit.measures.activations.TapSummary`, the BN inputs' moments merged."""

import numpy as np

from regaudit.measures.activations import TapSummary
from regaudit.measures.shift import ChannelMoments

from regaudit.callbacks.backends import backend


def fast_path_held(values):
    """Whether a tap's `_fast_moments` output is sound: a NaN or infinity anywhere in the
    tensor (or a float32 mean that overflowed) makes its sums or its shift non-finite."""
    if "sums" not in values:
        return True
    return bool(np.isfinite(values["sums"]).all() and np.isfinite(values["shift"]).all())


def central_moments(values):
    """`_moments`' summaries from `_fast_moments`' stacked per-unit sums of powers of
    deviations from a shift c (S1..S4), of |x| and of zeros: per unit, a = S1/n is the
    mean's offset from c and M2 = S2 - n a^2, M3 = S3 - 3 a S2 + 2 n a^3,
    M4 = S4 - 4 a S3 + 6 a^2 S2 - 3 n a^4; the tensor's central moments from the units'
    by the exact grouped-moment identities (Pebay 2008) with delta_u = mean_u - mean.
    Measured against numpy float64: relative error below 1e-6 on normal, offset
    (1000 +- 0.01), ReLU, heavy-tailed and per-unit-scaled data. A light (training-probe)
    summary has no third and fourth powers: its m3, m4, zeros, min and max are NaN."""
    sums = np.asarray(values["sums"], np.float64)
    if "scale" in values:  # the sums are of powers of scaled deviations (d * scale)^p
        scale = float(values["scale"])
        powers = np.array([1, 2, 3, 4, 1, 0][: len(sums)], np.float64)
        sums = sums / scale ** powers.reshape((-1,) + (1,) * (sums.ndim - 1))
    s1, s2 = sums[0], sums[1]
    light = len(sums) == 2
    nan = np.full_like(s1, np.nan)
    s3, s4, absolute, zeros = (nan, nan, nan, nan) if light else sums[2:6]
    unit_n = np.full(s1.shape, float(values["unit_n"]))
    a = s1 / unit_n
    unit_m2 = s2 - unit_n * a * a
    unit_m3 = s3 - 3.0 * a * s2 + 2.0 * unit_n * a**3
    unit_m4 = s4 - 4.0 * a * s3 + 6.0 * a * a * s2 - 3.0 * unit_n * a**4
    unit_mean = np.asarray(values["shift"], np.float64) + a
    n = float(unit_n.sum())
    mean = float(np.sum(unit_n * unit_mean) / n)
    delta = unit_mean - mean
    extent = np.asarray(values["extent"], np.float64) if "extent" in values else np.stack([nan, nan])
    return {
        "count": n,
        "finite": n,
        "center": mean,
        "m2": float(np.sum(unit_m2 + unit_n * delta**2)),
        "m3": float(np.sum(unit_m3 + 3.0 * delta * unit_m2 + unit_n * delta**3)),
        "m4": float(np.sum(unit_m4 + 4.0 * delta * unit_m3 + 6.0 * delta**2 * unit_m2
                           + unit_n * delta**4)),
        "abs_sum": float(np.sum(absolute)),
        "zeros": float(np.sum(zeros)),
        "low": float(extent[0].min()) if extent.size else np.nan,
        "high": float(extent[1].max()) if extent.size else np.nan,
        "unit_finite": unit_n,
        "unit_sum": unit_n * unit_mean,
        "unit_maxabs": np.maximum(np.abs(extent[0]), np.abs(extent[1])),
        "unit_m2": np.maximum(unit_m2, 0.0),
    }


def to_summary(values):
    if "sums" in values:  # the fast path's per-unit sums
        values = {**values, **central_moments(values)}
    scalar = lambda key: float(values[key])  # noqa: E731
    return TapSummary(
        count=scalar("count"),
        finite=scalar("finite"),
        mean=scalar("center"),
        m2=scalar("m2"),
        m3=scalar("m3"),
        m4=scalar("m4"),
        abs_sum=scalar("abs_sum"),
        min=scalar("low"),
        max=scalar("high"),
        zeros=scalar("zeros"),
        unit_finite=values["unit_finite"],
        unit_sum=values["unit_sum"],
        unit_maxabs=values["unit_maxabs"],
        reservoir=values.get("reservoir", np.zeros(0)),
        saturated=float(values["saturated"]) if "saturated" in values else None,
        unit_m2=values["unit_m2"],
    )


def merge_channels(merged, out):
    for name, values in out.items():
        part = ChannelMoments(*(backend.host(values[key]) for key in ("count", "sum", "m2")))
        merged[name] = part if name not in merged else merged[name].merge(part)
