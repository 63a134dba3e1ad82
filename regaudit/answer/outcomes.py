"""What the runs achieved, defined once: final values, the outcome runs are compared on,
the generalization gap, and each run's regularization setup (from its tags).

The generalization gap is `gen_gap_acc` = accuracy - val_accuracy when the runs log an
accuracy, else `gen_gap_loss` = val_loss - loss: positive means the model does better on
the data it trained on. Findings, claims and figures all read it from here.
"""

import numpy as np
import pandas as pd

from regaudit.measures.registry import AS_LOGGED, EPOCH, FRACTION, declare
from regaudit.schema import MODEL, TABLE_HISTORY, TAG_PREFIX

#: (training, validation) metric pairs an accuracy-like gap is read from, first found wins
ACCURACY_PAIRS = (("accuracy", "val_accuracy"), ("acc", "val_acc"),
                  ("sparse_categorical_accuracy", "val_sparse_categorical_accuracy"),
                  ("categorical_accuracy", "val_categorical_accuracy"),
                  ("binary_accuracy", "val_binary_accuracy"))


def final(table, measure, layer=MODEL):
    """{run: value} of `measure` at `layer` at each run's last audit (finite values)."""
    rows = table[(table.measure == measure) & (table.layer == layer)]
    if not len(rows):
        return {}
    rows = rows.sort_values(["run", "epoch", "step"])
    last = rows.groupby("run")["value"].last().dropna().to_dict()
    return {run: float(value) for run, value in last.items() if np.isfinite(value)}


def final_layers(table, measure):
    """DataFrame run, layer, value of `measure` at each run's last audit, every layer."""
    rows = table[table.measure == measure]
    if not len(rows):
        return pd.DataFrame(columns=["run", "layer", "value"])
    return at_last_epoch(rows)[["run", "layer", "value"]]


def at_last_epoch(rows):
    """The rows of each run's last epoch (its last audit, for a measure's rows)."""
    return rows[rows.epoch == rows.run.map(rows.groupby("run")["epoch"].max())]


def by_group(values, groups):
    """{group: [values of its runs]} in the order the groups first appear."""
    out = {}
    for run, group in groups.items():
        if run in values and np.isfinite(values[run]):
            out.setdefault(group, []).append(float(values[run]))
    return out


def _accuracy_pair(history):
    present = set(history.measure)
    return next(((t, v) for t, v in ACCURACY_PAIRS if t in present and v in present), None)


def outcome(runs):
    """(measure, {run: final value}, higher_is_better, bounds): the final validation
    accuracy when logged, else the final validation loss (else the training ones)."""
    history = runs.history
    pair = _accuracy_pair(history) if len(history) else None
    candidates = ([(pair[1], True, (0.0, 1.0))] if pair else []) + [
        ("val_loss", False, (-np.inf, np.inf))]
    if pair:
        candidates.append((pair[0], True, (0.0, 1.0)))
    candidates.append(("loss", False, (-np.inf, np.inf)))
    for measure, higher, bounds in candidates:
        values = final(history, measure)
        if values:
            return measure, values, higher, bounds
    return None, {}, True, (-np.inf, np.inf)


GEN_GAP_ACC = declare(
    "gen_gap_acc", table=TABLE_HISTORY, scope=EPOCH, unit=FRACTION,
    doc="""gen_gap_acc = accuracy - val_accuracy at each epoch, from Keras' logs: how much
    better the model does on its training data than on validation data (positive:
    overfitting). The generalization gap where an accuracy is compiled.""")
GEN_GAP_LOSS = declare(
    "gen_gap_loss", table=TABLE_HISTORY, scope=EPOCH, unit=AS_LOGGED,
    doc="""gen_gap_loss = val_loss - loss at each epoch, from Keras' logs (positive:
    overfitting). The generalization gap where no accuracy is compiled.""")


def gap_definition(history):
    """(name, training measure, validation measure, sign): gen_gap_acc = accuracy -
    val_accuracy (sign +1) when an accuracy pair is logged, else gen_gap_loss = val_loss
    - loss (sign -1 on train - val); None without a pair."""
    if not len(history):
        return None
    pair = _accuracy_pair(history)
    if pair:
        return GEN_GAP_ACC, pair[0], pair[1], 1.0
    present = set(history.measure)
    if {"loss", "val_loss"} <= present:
        return GEN_GAP_LOSS, "loss", "val_loss", -1.0
    return None


def gap_series(history):
    """(name, DataFrame run, epoch, value): the generalization gap at every epoch."""
    definition = gap_definition(history)
    if definition is None:
        return None, pd.DataFrame(columns=["run", "epoch", "value"])
    name, train, val, sign = definition
    wide = history[history.measure.isin([train, val])].pivot_table(
        index=["run", "epoch"], columns="measure", values="value").dropna().reset_index()
    wide["value"] = sign * (wide[train] - wide[val])
    return name, wide[["run", "epoch", "value"]]


def final_gap(runs):
    """(name, {run: the generalization gap at its last epoch})."""
    name, series = gap_series(runs.history)
    if name is None or not len(series):
        return name, {}
    last = series.sort_values("epoch").groupby("run")["value"].last()
    return name, {run: float(v) for run, v in last.items() if np.isfinite(v)}


GAP_WORDS = {GEN_GAP_ACC: "generalization gap (accuracy - val_accuracy)",
             GEN_GAP_LOSS: "generalization gap (val_loss - loss)"}


def tag_values(runs, key):
    """{run: value} of the tag `regaudit.<key>`."""
    tags = runs.tags
    rows = tags[tags.key == TAG_PREFIX + key]
    return dict(zip(rows.run, rows.value))


def as_int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


#: the param prefix of a study variant's levels (`regaudit.studies.runs.LEVEL_PARAM`)
STUDY_PARAM = "study."


def setups(runs):
    """{run: {"dropout": bool, "batchnorm": bool, "rates": [float], "placement": str,
    "dropout_before_batchnorm": [layer], "lr": float, "others": ((level, value), ...)}} from
    the tags RegAudit writes and a study's level params (`study.lr`, ...)."""
    dropout = tag_values(runs, "dropout_layers")
    batchnorm = tag_values(runs, "batchnorm_layers")
    rates = tag_values(runs, "dropout_rates")
    placement = tag_values(runs, "batchnorm_placement")
    feeding = tag_values(runs, "dropout_before_batchnorm")
    params = dict(zip(runs.runs["run"], runs.runs["params"])) if "params" in runs.runs else {}
    out = {}
    for run in runs.run_ids:
        own = params.get(run) or {}
        levels = {k[len(STUDY_PARAM):]: v for k, v in own.items() if str(k).startswith(STUDY_PARAM)}
        rate_list = [float(r) for r in str(rates.get(run) or "").split(",") if r.strip()]
        out[run] = {
            "dropout": as_int(dropout.get(run)) > 0 and any(r > 0 for r in rate_list or [1]),
            "batchnorm": as_int(batchnorm.get(run)) > 0,
            "rates": rate_list,
            "placement": placement.get(run, "none"),
            "dropout_before_batchnorm": [] if feeding.get(run, "none") == "none"
            else str(feeding[run]).split(","),
            # a study's learning-rate factor and its levels other than dropout and bn
            "lr": float(levels.get("lr", 1.0)),
            "others": tuple(sorted((k, str(v)) for k, v in levels.items() if k not in ("dropout", "bn"))),
        }
    return out


def group_setups(runs, groups):
    """{group: setup dict} for the groups whose runs share one setup."""
    setup = setups(runs)
    out = {}
    for group in dict.fromkeys(groups.values()):
        members = [setup[r] for r, g in groups.items() if g == group and r in setup]
        keys = {(s["dropout"], s["batchnorm"], s["placement"], tuple(s["rates"]), s["others"])
                for s in members}
        if len(keys) == 1:
            out[group] = members[0]
    return out


def run_names(runs):
    return dict(zip(runs.runs["run"], runs.runs["name"]))


def final_step(runs):
    """{run: the global training step of its last history row}."""
    history = runs.history
    if not len(history):
        return {}
    last = history.sort_values(["epoch", "step"]).groupby("run")["step"].last()
    return {run: int(step) for run, step in last.items() if np.isfinite(step)}
