"""The probe pass's reductions on the host, in float64: PyTorch's eager pass (`torch`).

The same summaries as `tensorflow_reductions` (which runs them in the TensorFlow graph), with the
same keys, so `probe.summaries.to_summary` and `merge_channels` take either: exact
moments in float64 with non-finite values left out, min/max of the finite values,
per-unit sums and centred sums of squares, zero, non-finite and near-bound counts, and
the reservoir's values at fixed flat positions. In float64 from the first value, so no
power-of-two rescaling is needed and one path serves every batch.
"""

import numpy as np

from regaudit.measures.activations import SAT_MARGIN

from regaudit.callbacks.backends.common import UNCHANGED, UNCHANGED_MARK, to_numpy


def _units(x):
    return x.shape[-1] if x.ndim > 1 else 1


def moments(x):
    """`tensorflow_reductions._moments` in numpy: `x` any float array."""
    flat = x.reshape(-1, _units(x))
    if np.isfinite(flat).all():
        return _finite_moments(flat)
    return masked_moments(flat)


def masked_moments(flat, xp=np):
    """The moments of the finite values of a [values, units] array, every value widened
    to float64, in the array module `xp` (numpy here, `jax.numpy` in
    `jax_reductions`)."""
    mask = xp.isfinite(flat)
    wide = xp.where(mask, flat.astype(xp.float64), 0.0)
    n = xp.sum(mask, dtype=xp.float64)
    unit_count = xp.sum(mask, axis=0, dtype=xp.float64)
    mean = xp.sum(wide) / xp.maximum(n, 1.0)
    dev = xp.where(mask, wide - mean, 0.0)
    unit_mean = xp.sum(wide, axis=0) / xp.maximum(unit_count, 1.0)
    unit_dev = xp.where(mask, wide - unit_mean, 0.0)
    dev2 = dev * dev
    unit_dev_sum = xp.sum(unit_dev, axis=0)
    return {
        "finite": n,
        "center": mean,
        "m2": xp.sum(dev2),
        "m3": xp.sum(dev2 * dev),
        "m4": xp.sum(dev2 * dev2),
        "abs_sum": xp.sum(xp.abs(wide)),
        "low": xp.min(xp.where(mask, wide, xp.inf), initial=xp.inf),
        "high": xp.max(xp.where(mask, wide, -xp.inf), initial=-xp.inf),
        "unit_finite": unit_count,
        "unit_sum": unit_dev_sum + unit_count * unit_mean,
        "unit_maxabs": xp.max(xp.where(mask, xp.abs(wide), xp.inf), axis=0, initial=-xp.inf),
        "unit_m2": xp.maximum(xp.sum(unit_dev * unit_dev, axis=0)
                              - unit_dev_sum * unit_dev_sum / xp.maximum(unit_count, 1.0), 0.0),
    }


def _finite_moments(flat):
    """`moments` of a [values, units] array whose values are all finite: the same sums
    without the masks (each mask is one more pass over the values)."""
    wide = flat.astype(np.float64)
    n = float(wide.size)
    rows = wide.shape[0]
    unit_mean = wide.sum(axis=0) / max(rows, 1)
    unit_dev = wide - unit_mean
    unit_m2 = np.einsum("ij,ij->j", unit_dev, unit_dev)
    mean = wide.sum() / max(n, 1.0)
    dev = wide - mean
    dev2 = dev * dev
    return {
        "finite": n,
        "center": mean,
        "m2": dev2.sum(),
        "m3": np.einsum("ij,ij->", dev2, dev),
        "m4": np.einsum("ij,ij->", dev2, dev2),
        "abs_sum": np.abs(wide).sum(),
        "low": float(flat.min()) if flat.size else np.inf,
        "high": float(flat.max()) if flat.size else -np.inf,
        "unit_finite": np.full(wide.shape[1], float(rows)),
        "unit_sum": unit_dev.sum(axis=0) + rows * unit_mean,
        "unit_maxabs": np.abs(wide).max(axis=0, initial=-np.inf),
        "unit_m2": np.maximum(unit_m2 - unit_dev.sum(axis=0) ** 2 / max(rows, 1), 0.0),
    }


def summaries(x, reservoir_rows, bounds, exact=True, light=False, fuse=False):
    """`tensorflow_reductions.summaries` on the host: `x` a backend tensor; `reservoir_rows` flat
    positions in this batch (numpy) or None. `exact` and `fuse` have no meaning here
    (every batch is exact)."""
    x = np.asarray(to_numpy(x))
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float32)  # float16/bfloat16 (mixed precision): measure in float32
    out = moments(x)
    out["count"] = float(x.size)
    out["zeros"] = float(np.count_nonzero(x == 0.0))
    if reservoir_rows is not None:
        out["reservoir"] = x.reshape(-1)[reservoir_rows]
    if bounds is not None and not light:
        low, high = bounds
        near = np.isfinite(x) & ((x <= low + SAT_MARGIN) | (x >= high - SAT_MARGIN))
        out["saturated"] = float(np.count_nonzero(near))
    return out


def zero_moments(channels, count=0.0, xp=np):
    """`tensorflow_reductions.zero_moments` in the array module `xp`."""
    return {name: {"count": xp.full((c,), count, xp.float64), "sum": xp.zeros((c,), xp.float64),
                   "m2": xp.zeros((c,), xp.float64)}
            for name, c in channels.items()}


def channel_moments(x, axis, mode=None, xp=np):
    """`tensorflow_reductions.channel_moments` in the array module `xp` (numpy here, `jax.numpy` in
    `jax_reductions`): per-channel count, sum and centred sum of squares of the finite
    values of a BN input, in float64."""
    if mode == UNCHANGED:
        return zero_moments({"x": x.shape[axis]}, UNCHANGED_MARK, xp)["x"]
    x = (np.asarray(to_numpy(x)) if xp is np else x).astype(xp.float64)
    x = xp.moveaxis(x, axis % x.ndim, -1)
    x = xp.reshape(x, (-1, x.shape[-1]))
    finite = xp.isfinite(x)
    count = xp.sum(finite, axis=0, dtype=xp.float64)
    total = xp.sum(xp.where(finite, x, 0.0), axis=0)
    dev = xp.where(finite, x - total / xp.maximum(count, 1.0), 0.0)
    return {"count": count, "sum": total, "m2": xp.sum(dev * dev, axis=0)}
