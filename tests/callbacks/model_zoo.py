"""Tiny Keras models (the seed article's three, a two-input model with a nested block, a
shared layer) and an independent numpy/scipy reference for every activation measure."""

import os
import sys
from dataclasses import replace

import keras
import numpy as np
from keras import layers
from scipy import stats

from regaudit.measures.activations import ACTIVATION_MEASURES
from regaudit.callbacks.demo import seed_models

# the core tests' numpy summaries (tests/regaudit/summaries.py)
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "regaudit"))
from summaries import chunk_summary  # noqa: E402


def two_input_nested():
    """Functional, two inputs, a nested Sequential block (tanh, Dropout, BN)."""
    a = keras.Input((6,), name="a")
    b = keras.Input((4,), name="b")
    da = layers.Dense(6, activation="relu", name="da")(a)
    merged = layers.Concatenate(name="concat")([da, b])
    block = keras.Sequential([
        keras.Input((10,)),
        layers.Dense(8, activation="tanh", name="block_dense"),
        layers.Dropout(0.2, name="block_drop"),
        layers.BatchNormalization(name="block_bn"),
    ], name="block")
    out = layers.Dense(3, activation="softmax", name="head")(block(merged))
    model = keras.Model([a, b], out, name="two_input")
    # symbolic tensors the tests read the references from, without new layer calls
    model.reference = {"concat": merged, "head": out, "da": da}
    model.block = block
    return model


def shared_layer():
    """A Dense layer called twice."""
    inputs = keras.Input((6,), name="x")
    shared = layers.Dense(6, activation="relu", name="shared")
    h1 = shared(inputs)
    h2 = layers.Dense(6, name="mid")(h1)
    h3 = shared(h2)
    out = layers.Dense(1, activation="sigmoid", name="out")(h3)
    model = keras.Model(inputs, out, name="shared_model")
    model.reference = {"shared": h1, "mid": h2, "shared:1": h3, "out": out}
    return model


def data_for(model, samples, rng):
    """Random inputs shaped for `model` and integer (or binary) targets."""
    inputs = [rng.normal(size=(samples,) + tuple(i.shape[1:])).astype("float32") for i in model.inputs]
    classes = model.outputs[0].shape[-1]
    y = rng.integers(0, max(classes, 2), samples)
    return (inputs[0] if len(inputs) == 1 else inputs), y


def compiled(model):
    classes = model.outputs[0].shape[-1]
    loss = "binary_crossentropy" if classes == 1 else "sparse_categorical_crossentropy"
    model.compile(optimizer="adam", loss=loss)
    return model


MODEL_FACTORIES = {
    "dropout_mlp": seed_models.dropout_mlp,
    "batchnorm_cnn": seed_models.batchnorm_cnn,
    "dropout_batchnorm_cnn": seed_models.dropout_batchnorm_cnn,
    "two_input_nested": two_input_nested,
    "shared_layer": shared_layer,
}


def tap_outputs(model, probe_inputs):
    """Every tapped tensor on the probe, taken independently through Keras sub-models
    (`keras.Model(inputs, layer output)`, never regaudit's graph walk)."""
    out = {}
    if hasattr(model, "reference"):
        names = list(model.reference)
        values = keras.Model(model.inputs, [model.reference[n] for n in names]).predict(
            probe_inputs, batch_size=128, verbose=0)
        out.update(dict(zip(names, values)))
    if hasattr(model, "block"):
        inner = model.block
        for layer in inner.layers:
            sub = keras.Model(inner.inputs, layer.output)
            out[f"block/{layer.name}"] = sub.predict(out["concat"], batch_size=128, verbose=0)
    if not hasattr(model, "reference"):
        for layer in model.layers:
            sub = keras.Model(model.inputs, layer.output)
            out[layer.name] = sub.predict(probe_inputs, batch_size=128, verbose=0)
    return out


def reference_measures(x, reservoir_rows, bounds=None):
    """Every activation measure of one tensor with numpy/scipy on the full tensor;
    quantiles and the histogram on the values at the callback's reservoir positions."""
    x64 = np.asarray(x, dtype=np.float64)
    flat = x64.ravel()
    finite = flat[np.isfinite(flat)]
    units = x64.reshape(-1, x64.shape[-1] if x64.ndim > 1 else 1)
    per_sample = x64.reshape(len(x64), -1)
    reservoir = per_sample[np.arange(len(x64))[:, None], reservoir_rows].ravel()
    reservoir = reservoir[np.isfinite(reservoir)]
    out = {
        "mean": finite.mean(), "std": finite.std(), "min": finite.min(), "max": finite.max(),
        "abs_mean": np.abs(finite).mean(), "rms": np.sqrt(np.mean(finite**2)),
        "skew": stats.skew(finite), "kurtosis": stats.kurtosis(finite),
        "zero_frac": np.mean(flat == 0), "nonfinite_frac": 1 - finite.size / flat.size,
        "dead_frac": np.mean(np.all(np.abs(units) <= 1e-12, axis=0)),
        "unit_mean_spread": np.std(units.mean(axis=0)),
    }
    for name, q in (("p01", .01), ("p15", .15), ("p50", .5), ("p85", .85), ("p99", .99)):
        out[name] = np.quantile(reservoir, q)
    if bounds is not None:
        out["sat_frac"] = np.mean((finite <= bounds[0] + 0.01) | (finite >= bounds[1] - 0.01))
    out["histogram"] = np.histogram(reservoir, bins=64, range=(finite.min(), finite.max()))
    # every other declared activation measure: its function on the exact summary of the
    # full tensor (reservoir: the callback's positions); the function itself is tested
    # against numpy in tests/regaudit/test_activations.py
    summary = replace(chunk_summary(x64 if x64.ndim > 1 else x64.reshape(-1, 1), bounds),
                      reservoir=reservoir)
    for name, function in ACTIVATION_MEASURES.items():
        if name not in out and (name != "sat_frac" or bounds is not None):
            out[name] = function(summary)
    return out
