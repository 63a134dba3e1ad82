"""The probe pass's reductions on JAX, inside the compiled pass (`jax`).

TensorFlow's reductions (`tensorflow_reductions`) in `jax.numpy`, with the same keys, so
`probe.summaries.to_summary` and `merge_channels` take either: a float32 batch
takes the fast path (per-unit sums of scaled powers, float32 along one short axis, then
float64: `probe.summaries.central_moments` finishes them on the host), a batch with a
non-finite value the exact one (every value widened to float64, non-finite ones left
out). The float64 sums run with 64-bit types switched on for these functions only
(`jax.enable_x64`: JAX computes in float32 by default, and the model stays so). Widening
every value to float64 costs about three times as much on XLA's CPU (measured: 40 ms
against 15 ms for a 128 x 26 x 26 x 32 map's moments on 2 cores).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from regaudit.measures.activations import SAT_MARGIN

from regaudit.callbacks.backends import host_reductions


def _float64(function):
    """`function` traced with 64-bit types on (this module is jax.numpy whichever backend
    Keras runs: its tests call it beside TensorFlow's)."""

    @functools.wraps(function)
    def wide(*args, **kwargs):
        with jax.enable_x64(True):
            return function(*args, **kwargs)

    return wide


def moments(x):
    """`host_reductions.masked_moments` on the device: `x` any float array, every value
    widened to float64, the non-finite ones left out."""
    return host_reductions.masked_moments(jnp.reshape(x, (-1, x.shape[-1] if x.ndim > 1 else 1)), jnp)


def _power_of_two_scale(peak):
    """`tensorflow_reductions._power_of_two_scale` in jax.numpy: 2^-e with 2^(e-1) <= peak < 2^e,
    from its exponent bits (multiplying by it is exact in float32)."""
    exponent = jnp.floor(jnp.log(peak) * (1.0 / np.log(2.0))).astype(jnp.int32) + 1
    exponent = jnp.clip(exponent, -125, 126)
    return jax.lax.bitcast_convert_type(jnp.left_shift(127 - exponent, 23).astype(jnp.int32), jnp.float32)


def _fast_moments(x, light=False):
    """`tensorflow_reductions._fast_moments` in jax.numpy, the same outputs for
    `probe.summaries.central_moments`: per-unit sums of powers of the deviations from the
    unit's float32 mean, scaled by a power of two, summed in float32 along one short axis
    and then in float64. For a float32 tensor whose values are all finite
    (`probe.summaries.fast_path_held`; else the batch is summarized again by `moments`)."""
    units = x.shape[-1] if x.ndim > 1 else 1
    w = jnp.reshape(x, (-1, x.shape[-2], units) if x.ndim >= 3 else (1, -1, units))
    shift = jnp.mean(w, axis=(0, 1))
    if light:
        extent = None
        peak = jnp.max(jnp.abs(w))
    else:
        extent = jnp.stack([jnp.min(w, axis=(0, 1)), jnp.max(w, axis=(0, 1))])
        peak = jnp.max(jnp.abs(extent))
    scale = _power_of_two_scale(peak)
    d = (w - shift) * scale
    d2 = d * d
    parts = [d, d2]
    if not light:
        parts += [d2 * d, d2 * d2, jnp.abs(w) * scale, (w == 0.0).astype(jnp.float32)]
    partial = jnp.stack([jnp.sum(part, axis=1) for part in parts])  # [K, rows, units]
    out = {"shift": shift, "sums": jnp.sum(partial.astype(jnp.float64), axis=1),
           "unit_n": jnp.asarray(w.size // units, jnp.int64), "scale": scale}
    if extent is not None:
        out["extent"] = extent
    return out


@_float64
def summaries(x, reservoir_rows, bounds, exact=False, light=False, fuse=False):
    """`tensorflow_reductions.summaries` on JAX: a float32 tensor takes `_fast_moments` (the host
    checks `probe.summaries.fast_path_held` and sends a batch with a non-finite value through
    the `exact` pass), float64 tensors and the `exact` pass take `moments`.
    `reservoir_rows`: flat positions in this batch (an int array) or None. `fuse` has no
    meaning here (XLA compiles the whole pass)."""
    if x.dtype not in (jnp.float32, jnp.float64):
        x = x.astype(jnp.float32)  # float16/bfloat16 (mixed precision): measured in float32
    if exact or x.dtype == jnp.float64:
        out = moments(x)
        out["count"] = jnp.asarray(float(x.size), jnp.float64)
        out["zeros"] = jnp.sum(x == 0.0, dtype=jnp.float64)
        near_ok = jnp.isfinite(x)
    else:
        out = _fast_moments(x, light)
        near_ok = True
    if reservoir_rows is not None:
        out["reservoir"] = jnp.take(jnp.reshape(x, (-1,)), reservoir_rows)
    if bounds is not None and not light:
        low, high = bounds
        near = near_ok & ((x <= low + SAT_MARGIN) | (x >= high - SAT_MARGIN))
        out["saturated"] = jnp.sum(near, dtype=jnp.float64)
    return out


@_float64
def zero_moments(channels, count=0.0):
    """`tensorflow_reductions.zero_moments` on JAX."""
    return host_reductions.zero_moments(channels, count, jnp)


@_float64
def channel_moments(x, axis, mode=None):
    """`tensorflow_reductions.channel_moments` on JAX (`host_reductions.channel_moments` in
    jax.numpy, float64)."""
    return host_reductions.channel_moments(x, axis, mode, jnp)
