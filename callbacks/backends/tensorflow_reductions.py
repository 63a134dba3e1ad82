"""The reductions the probe pass runs in TensorFlow's graph (`regaudit.callbacks.probe.summaries`
turns them into summaries on the host).

Per tapped tensor and probe mini-batch, `summaries` returns exact streaming moments,
min/max, zero and non-finite counts, per-unit sums and the reservoir values; a float32
tensor takes `_fast_moments` (power-of-two-scaled deviations, float32 arithmetic with
float64 accumulation), anything with NaN or Inf is redone in float64 (`_moments`); `channel_moments` are the
per-channel moments of a BatchNormalization input.
"""

import numpy as np

import tensorflow as tf

from regaudit.measures.activations import SAT_MARGIN

from regaudit.callbacks.backends.common import UNCHANGED, UNCHANGED_MARK


def _moments(x):
    """The exact summaries, in float64 with non-finite values left out: the fallback for
    a float32 batch `_fast_moments` cannot take and the path for float64 tensors.
    Per-unit second moments use deviations from the unit's mean, so a near-constant or
    dead unit keeps an exact, not a cancelled, variance."""
    units = x.shape[-1] if x.shape.rank and x.shape.rank > 1 else 1
    finite = tf.math.is_finite(x)
    mask = tf.reshape(finite, [-1, units])
    wide = tf.cast(tf.reshape(x, [-1, units]), tf.float64)
    wide = tf.where(mask, wide, tf.zeros_like(wide))
    n = tf.reduce_sum(tf.cast(mask, tf.float64))
    unit_count = tf.reduce_sum(tf.cast(mask, tf.float64), axis=0)
    inf = tf.fill(tf.shape(x), tf.constant(np.inf, x.dtype))
    low = tf.reduce_min(tf.where(finite, x, inf))
    high = tf.reduce_max(tf.where(finite, x, -inf))
    # a non-finite value keeps its unit alive (it is counted as non-finite instead)
    unit_maxabs = tf.reduce_max(
        tf.where(mask, tf.abs(tf.reshape(x, [-1, units])), tf.reshape(inf, [-1, units])), axis=0)
    mean = tf.reduce_sum(wide) / tf.maximum(n, 1.0)
    dev = tf.where(mask, wide - mean, tf.zeros_like(wide))
    unit_mean = tf.reduce_sum(wide, axis=0) / tf.maximum(unit_count, 1.0)
    unit_dev = tf.where(mask, wide - unit_mean, tf.zeros_like(wide))
    dev2 = dev * dev
    unit_dev_sum = tf.reduce_sum(unit_dev, axis=0)
    return {
        "finite": n,
        "center": mean,
        "m2": tf.reduce_sum(dev2),
        "m3": tf.reduce_sum(dev2 * dev),
        "m4": tf.reduce_sum(dev2 * dev2),
        "abs_sum": tf.reduce_sum(tf.abs(wide)),
        "low": tf.cast(low, tf.float64),
        "high": tf.cast(high, tf.float64),
        "unit_finite": unit_count,
        "unit_sum": unit_dev_sum + unit_count * unit_mean,
        "unit_maxabs": tf.cast(unit_maxabs, tf.float64),
        "unit_m2": tf.maximum(
            tf.reduce_sum(unit_dev * unit_dev, axis=0)
            - unit_dev_sum * unit_dev_sum / tf.maximum(unit_count, 1.0), 0.0),
    }


def _power_of_two_scale(peak):
    """2^-e with 2^(e-1) <= peak < 2^e (e clipped to [-125, 126]), built from its
    exponent bits: multiplying by it is exact in float32 (no rounding), so scaled powers
    lose nothing and cannot overflow whatever the tensor's magnitude."""
    # a zero peak gives some clipped exponent (every deviation is 0 then); a non-finite
    # one sends the batch to the float64 fallback anyway
    exponent = tf.cast(tf.math.floor(tf.math.log(peak) * (1.0 / np.log(2.0))), tf.int32) + 1
    exponent = tf.clip_by_value(exponent, -125, 126)
    return tf.bitcast(tf.bitwise.left_shift(127 - exponent, 23), tf.float32)


def _fast_moments(x, light=False):
    """The raw material of `_moments` for a float32 tensor whose values are all finite,
    at float32 speed: deviations from a per-unit shift (the unit's float32 mean), scaled
    by a power of two that brings the tensor's largest |value| into [0.5, 1) (exact, so
    activations of 1e-20 or 1e30 are summed as accurately as activations of 1), and
    their powers in float32, summed in float32 along one short axis only (the
    second-to-last: image width, sequence length; the batch for a rank-2 tensor), then
    in float64, all sums in one stacked tensor. `probe.summaries.central_moments` undoes the scale and
    turns them into the summaries on the host (few ops in the graph: tracing and the
    first call's graph optimisation stay quick). `light`: only what the training probe
    needs (count, mean, variance)."""
    units = x.shape[-1] if x.shape.rank and x.shape.rank > 1 else 1
    if x.shape.rank and x.shape.rank >= 3:
        w = tf.reshape(x, [-1, tf.shape(x)[-2], units])
    else:
        w = tf.reshape(x, [1, -1, units])
    # the unit's own mean as the shift keeps the shifted sums free of cancellation
    shift = tf.reduce_mean(w, axis=[0, 1])
    if light:
        extent = None
        peak = tf.reduce_max(tf.abs(w))
    else:
        extent = tf.stack([tf.reduce_min(w, axis=[0, 1]), tf.reduce_max(w, axis=[0, 1])])
        peak = tf.reduce_max(tf.abs(extent))
    scale = _power_of_two_scale(peak)
    d = (w - shift) * scale
    d2 = d * d
    parts = [d, d2]
    if not light:
        parts += [d2 * d, d2 * d2, tf.abs(w) * scale, tf.cast(tf.equal(w, 0.0), tf.float32)]
    partial = tf.stack([tf.reduce_sum(part, axis=1) for part in parts])  # [K, rows, units]
    out = {"shift": shift, "sums": tf.reduce_sum(tf.cast(partial, tf.float64), axis=1),
           "unit_n": tf.size(w) // units, "scale": scale}
    if extent is not None:
        out["extent"] = extent
    return out


#: values one tap's reductions see over a fit (per-sample values x probe rows x planned
#: audits) from which XLA-fusing them pays: compiling one tensor shape costs about 0.3 s,
#: and fused, the sums of powers read a conv feature map once instead of about 17 times
#: (1-5 ns saved per value, measured on 4-D maps from 5x5x64 to 32x32x256; nothing on
#: 2-D tensors, which stay unfused)
FUSE_MIN_VALUES = 1e8
_fused_moments = tf.function(_fast_moments, jit_compile=True)


def fuses(shape, rows, audits):
    """Whether the probe pass XLA-fuses a tap's reductions: its per-sample `shape` has
    two axes or more (a conv feature map, a sequence of vectors) and `rows` probe rows per
    audit over `audits` planned audits reach FUSE_MIN_VALUES (the compilation is repaid).
    `audits` None (a schedule whose count is not known in advance): no."""
    if audits is None or len(shape) < 2 or any(d is None for d in shape):
        return False
    return float(np.prod(shape)) * rows * audits >= FUSE_MIN_VALUES


def summaries(x, reservoir_rows, bounds, exact, light=False, fuse=False):
    """Per-batch summaries of one tapped tensor. A float32 tensor takes `_fast_moments`
    (`fast_path_held` tells the host whether every value was finite; else it recomputes
    that batch with `exact=True`), compiled by XLA into one fused computation when `fuse`
    (`fuses`); float64 tensors always take the exact path. `reservoir_rows`: flat
    positions in this batch to keep."""
    if x.dtype not in (tf.float32, tf.float64):
        x = tf.cast(x, tf.float32)  # float16/bfloat16 (mixed precision): measure in float32
    if exact or x.dtype == tf.float64:
        out = _moments(x)
        out["count"] = tf.cast(tf.size(x), tf.float64)
        out["zeros"] = tf.cast(tf.math.count_nonzero(tf.equal(x, 0.0)), tf.float64)
        near_ok = tf.math.is_finite(x)
    else:
        out = (_fused_moments if fuse else _fast_moments)(x, light)
        near_ok = True
    if reservoir_rows is not None:
        out["reservoir"] = tf.gather(tf.reshape(x, [-1]), reservoir_rows)
    if bounds is not None and not light:
        low, high = bounds
        near = near_ok & ((x <= low + SAT_MARGIN) | (x >= high - SAT_MARGIN))
        out["saturated"] = tf.cast(tf.math.count_nonzero(near), tf.float64)
    return out


def zero_moments(channels, count=0.0):
    """Per-channel moments of no values (`count`=UNCHANGED_MARK: "as in inference")."""
    return {name: {"count": tf.fill([c], tf.constant(count, tf.float64)),
                   "sum": tf.zeros([c], tf.float64), "m2": tf.zeros([c], tf.float64)}
            for name, c in channels.items()}


def channel_moments(x, axis, mode=None):
    """Per-channel count, sum and centred sum of squares of a BN input (finite values).
    `mode=UNCHANGED`: the input is the inference pass's own tensor; only a marker."""
    if mode == UNCHANGED:
        channels = x.shape[axis]
        return {"count": tf.fill([channels], tf.constant(UNCHANGED_MARK, tf.float64)),
                "sum": tf.zeros([channels], tf.float64), "m2": tf.zeros([channels], tf.float64)}
    x = tf.cast(x, tf.float64)
    rank = x.shape.rank
    axis = axis % rank
    if axis != rank - 1:
        x = tf.transpose(x, [d for d in range(rank) if d != axis] + [axis])
    per_channel = tf.reshape(x, [-1, x.shape[-1]])
    finite = tf.math.is_finite(per_channel)
    clean = tf.where(finite, per_channel, tf.zeros_like(per_channel))
    count = tf.reduce_sum(tf.cast(finite, tf.float64), axis=0)
    total = tf.reduce_sum(clean, axis=0)
    dev = tf.where(finite, per_channel - total / tf.maximum(count, 1.0), tf.zeros_like(clean))
    return {"count": count, "sum": total, "m2": tf.reduce_sum(dev * dev, axis=0)}
