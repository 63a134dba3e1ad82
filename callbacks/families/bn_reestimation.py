"""The BatchNormalization remedy, applied and measured: moving statistics re-estimated.

BN's moving statistics are exponential averages that lag the data early in training
(RA210) and, with Dropout before BN, are collected under a variance inference never sees
(Li et al. 2019, RA212). The remedy both findings name: re-estimate them with the weights
as they are. `reestimate_batchnorm(model, x)` does it on a copy (the user's model is never
touched): every noise source off (Dropout, GaussianNoise, attention and RNN dropout at
rate 0), batches of `x` through the copy in training mode, each BN layer's moving mean and
variance replaced by the cumulative average of its batch means and (biased, as Keras
updates them) batch variances over the batches (momentum (k-1)/k at batch k).

`RemedyFamily` runs it at train end on the training probe (the training samples the
audit already holds, at most `probe_size`; no pipeline is read) and measures the
validation probe's loss and compiled metrics before and after, as model-level measures
`bn_reestimated_<metric>_before` / `_after` (MLflow `regaudit/model/...`, the shift table).
A model its config cannot rebuild (a subclassed model) is not copied: the run's tag
`regaudit.remedy` says so.
"""

import numpy as np

from regaudit.errors import error_line
from regaudit.model import regularizers
from regaudit.measures.registry import fill
from regaudit.answer.remedy_findings import BN_REESTIMATED_AFTER, BN_REESTIMATED_BEFORE
from regaudit.schema import MODEL, TABLE_SHIFT, TAG_PREFIX

from regaudit.callbacks.families.base import Family

#: the run tag that says why a BN model's remedy was not measured
TAG = TAG_PREFIX + "remedy"

#: batches and batch size of the re-estimation (its cost is in benchmarks/overhead.py)
BATCHES = 16
BATCH_SIZE = 32


def copy_model(model):
    """A copy of `model` with its weights (custom layers through their own classes),
    compiled as `model` is when it is."""
    import random

    import keras

    from regaudit.callbacks.study.variants import compile_like, rebuild

    # new layers draw their default seeds from Python's and numpy's global generators:
    # the user's next layers get the seeds they would have got without the copy
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        copy = rebuild(model, keras.saving.serialize_keras_object(model))
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
    copy.set_weights(model.get_weights())
    if getattr(model, "compiled", False):
        compile_like(copy, model)
    return copy


def _noise_off(model):
    for layer in model._flatten_layers(include_self=False):
        kind = regularizers.noise_kind(layer)
        if kind == "gaussian_noise":
            layer.stddev = 0.0
        elif kind is not None:
            layer.rate = 0.0
        elif regularizers.is_rnn(layer):
            for cell in regularizers.rnn_cells(layer.cell):
                cell.dropout, cell.recurrent_dropout = 0.0, 0.0


def batchnorm_layers(model):
    return [layer for layer in model._flatten_layers(include_self=False) if regularizers.is_batchnorm(layer)]


def reestimate_batchnorm(model, data, batches=BATCHES, batch_size=BATCH_SIZE, seed=0):
    """A copy of `model` whose BN moving statistics are re-estimated on `batches` batches
    of `data` (inputs as the model takes them: arrays or a structure of arrays; a seeded
    draw without replacement when there are more samples than batches x batch_size)."""
    copy = copy_model(model)
    _reestimate(copy, data, batches, batch_size, seed)
    return copy


def _reestimate(copy, data, batches, batch_size, seed):
    """`reestimate_batchnorm` in place, on a copy the caller owns."""
    import keras

    norms = batchnorm_layers(copy)
    if not norms:
        return
    _noise_off(copy)
    flat = keras.tree.flatten(data)
    available = len(flat[0])
    take = min(available, batches * batch_size)
    order = np.sort(np.random.default_rng(seed).choice(available, size=take, replace=False))
    momenta = {id(bn): bn.momentum for bn in norms}
    try:
        for k, start in enumerate(range(0, take, batch_size), start=1):
            index = order[start:start + batch_size]
            for bn in norms:
                bn.momentum = (k - 1) / k  # the cumulative average of the batch statistics
            copy(keras.tree.map_structure(lambda a: a[index], data), training=True)
    finally:
        for bn in norms:
            bn.momentum = momenta[id(bn)]


class RemedyFamily(Family):
    """At train end: BN re-estimated on the training probe, the validation probe's
    metrics before and after (`bn_reestimated_<metric>_before/_after`)."""

    name = "remedy"
    needs = frozenset({"train_probe"})

    def measure(self, context):
        return {}, {}

    def finish(self, context):
        model, probe, train = context.model, context.probe, context.train_probe
        if not batchnorm_layers(model) or train is None or probe.source != "val" or \
                probe.targets is None or not getattr(model, "compiled", False):
            return {}, {}
        try:
            copy = copy_model(model)
        except Exception as error:  # noqa: BLE001 - a model its config cannot rebuild
            context.set_tags({TAG: f"not measured: the model cannot be copied from its config "
                                   f"({type(error).__name__}: {error_line(error, 160)})"})
            return {}, {}
        rows, metrics = [], {}
        # one copy, evaluated as trained, re-estimated in place, evaluated again: its
        # compiled evaluation serves both (the variables change, not the graph)
        for when in (BN_REESTIMATED_BEFORE, BN_REESTIMATED_AFTER):
            if when == BN_REESTIMATED_AFTER:
                _reestimate(copy, train.inputs, BATCHES, BATCH_SIZE, context.settings.seed)
            scores = copy.evaluate(probe.inputs, probe.targets, sample_weight=probe.weights,
                                   batch_size=context.settings.probe_batch_size, verbose=0,
                                   return_dict=True)
            for name, value in scores.items():
                measure = fill(when, metric=name)
                if np.isfinite(value):
                    metrics[(MODEL, measure)] = float(value)
                    rows.append(context.row(MODEL, "Model", measure, float(value)))
        return {TABLE_SHIFT: rows}, metrics
