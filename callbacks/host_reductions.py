"""The probe pass's reductions on the host, in float64: PyTorch's eager pass (`backend`).

The same summaries as `reductions` (which runs them in the TensorFlow graph), with the
same keys, so `reductions.to_summary` and `reductions.merge_channels` take either: exact
moments in float64 with non-finite values left out, min/max of the finite values,
per-unit sums and centred sums of squares, zero, non-finite and near-bound counts, and
the reservoir's values at fixed flat positions. In float64 from the first value, so no
power-of-two rescaling is needed and one path serves every batch.
"""

import numpy as np

from regaudit.measures.activations import SAT_MARGIN

from regaudit.callbacks import backend
from regaudit.callbacks.reductions import UNCHANGED, UNCHANGED_MARK


def _units(x):
    return x.shape[-1] if x.ndim > 1 else 1


def moments(x):
    """`reductions._moments` in numpy: `x` any float array."""
    units = _units(x)
    flat = x.reshape(-1, units)
    mask = np.isfinite(flat)
    if mask.all():
        return _finite_moments(flat)
    wide = np.where(mask, flat.astype(np.float64), 0.0)
    n = float(mask.sum())
    unit_count = mask.sum(axis=0).astype(np.float64)
    finite_values = flat[mask]
    low = float(finite_values.min()) if finite_values.size else np.inf
    high = float(finite_values.max()) if finite_values.size else -np.inf
    unit_maxabs = np.where(mask, np.abs(flat.astype(np.float64)), np.inf).max(axis=0, initial=-np.inf)
    mean = wide.sum() / max(n, 1.0)
    dev = np.where(mask, wide - mean, 0.0)
    unit_mean = wide.sum(axis=0) / np.maximum(unit_count, 1.0)
    unit_dev = np.where(mask, wide - unit_mean, 0.0)
    dev2 = dev * dev
    unit_dev_sum = unit_dev.sum(axis=0)
    return {
        "finite": n,
        "center": mean,
        "m2": dev2.sum(),
        "m3": (dev2 * dev).sum(),
        "m4": (dev2 * dev2).sum(),
        "abs_sum": np.abs(wide).sum(),
        "low": low,
        "high": high,
        "unit_finite": unit_count,
        "unit_sum": unit_dev_sum + unit_count * unit_mean,
        "unit_maxabs": unit_maxabs,
        "unit_m2": np.maximum((unit_dev * unit_dev).sum(axis=0)
                              - unit_dev_sum * unit_dev_sum / np.maximum(unit_count, 1.0), 0.0),
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
    """`reductions.summaries` on the host: `x` a backend tensor; `reservoir_rows` flat
    positions in this batch (numpy) or None. `exact` and `fuse` have no meaning here
    (every batch is exact)."""
    x = np.asarray(backend.to_numpy(x))
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


def zero_moments(channels, count=0.0):
    """`reductions.zero_moments` on the host."""
    return {name: {"count": np.full(c, count, np.float64), "sum": np.zeros(c), "m2": np.zeros(c)}
            for name, c in channels.items()}


def channel_moments(x, axis, mode=None):
    """`reductions.channel_moments` on the host: per-channel count, sum and centred sum
    of squares of the finite values of a BN input."""
    if mode == UNCHANGED:
        channels = x.shape[axis]
        return {"count": np.full(channels, UNCHANGED_MARK), "sum": np.zeros(channels),
                "m2": np.zeros(channels)}
    x = np.asarray(backend.to_numpy(x), np.float64)
    x = np.moveaxis(x, axis % x.ndim, -1).reshape(-1, x.shape[axis])
    finite = np.isfinite(x)
    clean = np.where(finite, x, 0.0)
    count = finite.sum(axis=0).astype(np.float64)
    total = clean.sum(axis=0)
    dev = np.where(finite, x - total / np.maximum(count, 1.0), 0.0)
    return {"count": count, "sum": total, "m2": (dev * dev).sum(axis=0)}
