"""Names shared by the writer, the reader and the reports: metric keys, tables, tags."""

import re

SCHEMA_VERSION = 1

ARTIFACT_DIR = "regaudit"
#: One Parquet part per audit: regaudit/<table>/audit-000003.parquet. Parts, not one
#: rewritten file, so an audit stored at epoch k can never be damaged by a later one.
TABLE_ACTIVATIONS = "activations"
TABLE_HISTOGRAMS = "histograms"
TABLE_SHIFT = "shift"
TABLE_ENSEMBLE = "ensemble"
#: Keras' epoch logs (loss, accuracy, val_*, ...) and epoch_seconds, layer "model"
TABLE_HISTORY = "history"
PLOTS_DIR = "regaudit/plots"

#: The tidy long form that flows from storage to findings to plots unchanged.
COLUMNS = ("run", "epoch", "step", "probe", "layer", "layer_class", "measure", "value")
HISTOGRAM_COLUMNS = (
    "run", "epoch", "step", "probe", "layer", "layer_class", "bin", "left", "right", "count",
)

#: The pseudo-layer of model-level measures (`regaudit/model/<measure>`).
MODEL = "model"

TAG_PREFIX = "regaudit."

#: MLflow allows letters, digits and `_ - . / :` and space in metric keys.
_DISALLOWED = re.compile(r"[^A-Za-z0-9_\-./: ]")
MAX_KEY_LENGTH = 250


def key_part(name):
    """Return `name` with every character MLflow rejects in a metric key replaced by `_`."""
    cleaned = _DISALLOWED.sub("_", str(name)).strip("/") or "_"
    return "model_" if cleaned == MODEL else cleaned


def metric_key(layer, measure):
    """The MLflow metric key `regaudit/<layer>/<measure>`; layer `model` is kept for
    model-level measures, and a user layer literally named `model` becomes `model_`."""
    layer_part = MODEL if layer == MODEL else key_part(layer)
    key = f"{ARTIFACT_DIR}/{layer_part}/{key_part(measure)}"
    if len(key) > MAX_KEY_LENGTH:
        # keep the measure readable; the full layer name stays in the Parquet table
        key = key[: MAX_KEY_LENGTH - len(measure) - 2] + "~/" + measure
    return key


def table_part_path(table):
    """The artifact folder holding one table's per-audit Parquet parts."""
    return f"{ARTIFACT_DIR}/{table}"


def part_file_name(audit_index):
    return f"audit-{audit_index:06d}.parquet"


def evenly_spaced(names, cap):
    """At most `cap` of `names` (order kept, duplicates dropped): all of them when they
    fit, else `cap` evenly spaced, the first and the last included. What a large model
    shows in MLflow metrics and in per-layer figures; the tables keep every layer."""
    names = list(dict.fromkeys(names))
    if len(names) <= cap:
        return names
    if cap <= 0:
        return []
    if cap == 1:
        return names[:1]
    step = (len(names) - 1) / (cap - 1)
    picks = sorted({int(round(i * step)) for i in range(cap)})
    return [names[i] for i in picks]
