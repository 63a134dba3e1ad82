"""What an audit sets up at train begin: the probe pass, the layers logged as metrics,
and the run's first tags and files (model.json, lint.json, meta.json)."""

import warnings

from regaudit import __version__
from regaudit.errors import RegauditWarning, UsageError
from regaudit.schema import SCHEMA_VERSION, TAG_PREFIX, evenly_spaced
from regaudit.model.tags import regularization_tags

from regaudit.callbacks.backends import keras_internals as internals
from regaudit.callbacks.lint import train_lint
from regaudit.callbacks.audit.describe import layer_table, meta
from regaudit.callbacks.probe.probe_pass import ProbePass
from regaudit.callbacks.probe.taps import NO_BATCH_AXIS
from regaudit.callbacks.probe.choice import ProbeUnavailable, choose_probe, choose_train_probe
from regaudit.callbacks.audit.schedule import planned_audits

#: what is still logged when no probe pass can run
STILL_LOGGED = "Keras' epoch logs (history) and the regularization tags are still logged; training goes on."


def probe_pass_for(callback, needs):
    """The compiled probe pass of `callback`'s model with its arguments (with a training
    probe when `needs` asks for one and the probe is the validation data), or None, with
    one warning saying what is still logged, when the model cannot be called for
    inference or no probe can be drawn without changing training."""
    model = callback.model
    if not internals.defines_call(model):
        warnings.warn(
            f"regaudit: {type(model).__name__} defines no call() (it trains through "
            "train_step), so regaudit cannot run it on a probe: no activation, shift or "
            f"dropout-ensemble measure for this fit. {STILL_LOGGED} Give the model a call() "
            "method to have it measured.", RegauditWarning, stacklevel=4)
        return None
    try:
        probe = choose_probe(model, callback.probe, callback.probe_size, callback.seed)
    except ProbeUnavailable as error:
        warnings.warn(f"{error} {STILL_LOGGED}", RegauditWarning, stacklevel=4)
        return None
    train_probe = None
    if "train_probe" in needs and probe.source == "val":
        train_probe = choose_train_probe(model, probe.size, callback.seed + 1)
    probe_pass = ProbePass(model, probe, callback.probe_batch_size, callback.seed,
                           train_probe=train_probe, select=callback.layers,
                           planned_audits=planned_audits(callback.schedule, callback.params),
                           twin="twin" in needs)
    _check_selection(probe_pass, callback.layers, model)
    _warn_unmeasured(probe_pass, model)
    return probe_pass


def metric_layers(probe_pass, most):
    """The layers whose per-layer measures are logged as MLflow metrics: `most` evenly
    spaced taps, every noise source, and each group of sources by its path's first
    component (train-end ensembles of a model with many)."""
    if probe_pass is None:
        return set()
    layers = set(evenly_spaced([t.name for t in probe_pass.taps], most))
    layers.update(probe_pass.dropout_taps)
    layers.update(name.split("/")[0] for name in probe_pass.dropout_taps)
    return layers


def run_opening(callback, probe_pass, layers_logged):
    """(tags, files): the run's first tags (regularization, version, probe, schedule, lint)
    and JSON files (model.json, lint.json, meta.json)."""
    model = callback.model
    layers = layer_table(model, probe_pass, layers_logged)
    tags = {TAG_PREFIX + k: v for k, v in regularization_tags(layers).items()}
    probe = None if probe_pass is None else probe_pass.probe
    tags.update({
        TAG_PREFIX + "version": __version__,
        TAG_PREFIX + "schema_version": SCHEMA_VERSION,
        TAG_PREFIX + "probe_source": "none" if probe is None else probe.source,
        TAG_PREFIX + "probe_size": 0 if probe is None else probe.size,
        TAG_PREFIX + "step_unit": callback.schedule.unit,
        # the train-end report is due: `regaudit sync` logs it if the store was away
        TAG_PREFIX + "report": "1" if callback.report else "0",
    })
    lint, lint_tags = train_lint(layers, callback.params, connected=probe_pass is not None)
    tags.update({TAG_PREFIX + k: v for k, v in lint_tags.items()})
    files = [("model.json", {"model": model.name, "layers": layers})]
    files += [("lint.json", lint)] if lint is not None else []
    files.append(("meta.json", meta(callback)))
    return tags, files


def _check_selection(probe_pass, selection, model):
    taps = probe_pass.taps
    if selection is not None and not taps:
        names = ", ".join(t.name for t in probe_pass.all_taps[:12])
        raise UsageError(
            f"regaudit: layers={selection.describe()} matched no layer of model "
            f"'{model.name}'; expected names, patterns or classes of its layers "
            f"({names}{', ...' if len(probe_pass.all_taps) > 12 else ''}).")


def _warn_unmeasured(probe_pass, model):
    """Say once which layer outputs are not measured and why (`taps.UNMEASURED_REASONS`:
    an output whose first axis is not the batch, an integer output); model.json and the
    report's layer table say it per layer."""
    parts = []
    for reason, names in probe_pass.unmeasured.items():
        listed = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
        why = "their first axis is not the batch" if reason == NO_BATCH_AXIS else f"of type: {reason}"
        parts.append(f"{len(names)} because {why} ({listed})")
    if parts:
        count = sum(len(names) for names in probe_pass.unmeasured.values())
        warnings.warn(
            f"regaudit: {count} layer output(s) of model '{model.name}' are not measured: "
            f"{'; '.join(parts)}; every other layer call is.", RegauditWarning, stacklevel=5)
