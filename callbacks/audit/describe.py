"""What model.json and meta.json say of an audited fit: the layer table and the settings."""

import keras

from regaudit import __version__
from regaudit.schema import SCHEMA_VERSION

from regaudit.callbacks.backends import backend
from regaudit.callbacks.backends import keras_internals as internals
from regaudit.callbacks.lint import layer_row


def layer_table(model, probe_pass, metric_layers):
    """One row per layer call (what model.json stores and the tags read), with its
    regularizer and noise sources (`regaudit.model.regularizers`); for a model that cannot
    be called, one row per layer it holds."""
    if probe_pass is None:
        calls = [(name, layer, parent, None, ()) for name, layer, parent
                 in internals.layer_tree(model)]
        audited, stochastic = set(), set()
        # no call() or no probe: the fit's warning says which
        reasons = {call[0]: "no probe pass" for call in calls}
    else:
        calls = [(t.name, t.layer, t.parent, t.shape, t.sources) for t in probe_pass.all_taps]
        reasons = {t.name: t.reason for t in probe_pass.all_taps}
        audited = {tap.name for tap in probe_pass.taps}
        stochastic = set(probe_pass.stochastic)
        regularizers = {t.name: (t.regularizer, t.noise) for t in probe_pass.all_taps}
    rows = []
    for name, layer, parent, shape, sources in calls:
        if probe_pass is None:
            row = layer_row(name, layer, name.rpartition("/")[0], parent, sources, shape)
        else:
            regularizer, noise = regularizers[name]
            row = layer_row(name, layer, parent, None, sources, shape, regularizer, noise)
        rows.append(row | {
            "params": int(layer.count_params()) if getattr(layer, "built", False) else 0,
            "audited": name in audited,
            # why not: `regaudit.callbacks.probe.taps.UNMEASURED_REASONS`
            "reason": None if name in audited else reasons.get(name),
            "stochastic": name in stochastic,
            "metrics": name in metric_layers,
        })
    return rows

def meta(callback):
    schedule = callback.schedule
    probe_pass = callback.probe_pass
    return {
        "schema_version": SCHEMA_VERSION,
        "regaudit_version": __version__,
        "keras_version": keras.__version__,
        "backend": backend.NAME,
        "backend_version": backend.version(),
        "families": [family.name for family in callback.families],
        "probe": None if probe_pass is None else {
            "source": probe_pass.probe.source,
            "size": probe_pass.probe.size,
            "seed": callback.seed,
            "batch_size": callback.probe_batch_size,
            "reservoir_size": probe_pass.reservoir_size,
        },
        "schedule": {
            "unit": schedule.unit,
            "every": getattr(schedule, "epochs", None) or getattr(schedule, "steps", None),
            "at_start": schedule.at_start,
        },
        "taps": 0 if probe_pass is None else len(probe_pass.taps),
        # the taps whose reductions the pass XLA-fuses (`backend.fuses`), and the
        # audits planned when that was decided
        "fused_taps": [] if probe_pass is None else sorted(probe_pass.fused),
        "planned_audits": None if probe_pass is None else probe_pass.planned_audits,
        "noise_sources": [] if probe_pass is None else [
            {"name": s.name, "kind": s.kind, "rate": s.rate} for s in probe_pass.noise_sources],
        "layers": None if callback.layers is None else callback.layers.describe(),
        "max_metric_layers": callback.max_metric_layers,
        "model_class": type(callback.model).__name__,
    }
