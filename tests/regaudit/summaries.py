"""Summaries of numpy arrays computed the slow, obvious way, for the measure tests."""

import numpy as np

from regaudit.measures import activations as A


def chunk_summary(x, bounds=None):
    """The summary of one chunk, computed the slow, obvious way with numpy."""
    flat = x.astype(np.float64).ravel()
    finite = np.isfinite(flat)
    values = flat[finite]
    mean = values.mean() if values.size else 0.0
    dev = values - mean
    units = x.reshape(-1, x.shape[-1]).astype(np.float64)
    unit_finite = np.isfinite(units)
    saturated = None
    if bounds is not None:
        saturated = float(np.sum((values <= bounds[0] + 0.01) | (values >= bounds[1] - 0.01)))
    return A.TapSummary(
        count=float(flat.size), finite=float(values.size), mean=float(mean),
        m2=float(np.sum(dev**2)), m3=float(np.sum(dev**3)), m4=float(np.sum(dev**4)),
        abs_sum=float(np.abs(values).sum()),
        min=float(values.min()) if values.size else np.inf,
        max=float(values.max()) if values.size else -np.inf,
        zeros=float(np.sum(flat == 0)),
        unit_finite=unit_finite.sum(axis=0).astype(np.float64),
        unit_sum=np.where(unit_finite, units, 0).sum(axis=0),
        unit_maxabs=np.where(unit_finite, np.abs(units), np.inf).max(axis=0),
        reservoir=flat.copy(),
        saturated=saturated,
        unit_m2=np.array([np.sum((u[np.isfinite(u)] - u[np.isfinite(u)].mean()) ** 2)
                          if np.isfinite(u).any() else 0.0 for u in units.T]),
    )


def merged(x, pieces, bounds=None):
    parts = [chunk_summary(p, bounds) for p in np.array_split(x, pieces) if len(p)]
    total = parts[0]
    for part in parts[1:]:
        total = total.merge(part)
    return total


