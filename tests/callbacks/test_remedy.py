"""The BatchNormalization remedy: moving statistics re-estimated on a copy, against a
hand-written numpy re-estimation; RegAudit's before/after on a real fit; the user's model
untouched."""

import random

import keras
import mlflow
import numpy as np
import pytest
from keras import layers

from regaudit.callbacks import RegAudit
from regaudit.callbacks.families.bn_reestimation import reestimate_batchnorm


def bn_mlp():
    keras.utils.set_random_seed(3)
    model = keras.Sequential([
        keras.Input((6,)), layers.Dense(5, activation="relu"), layers.Dropout(0.5),
        layers.BatchNormalization(momentum=0.99), layers.Dense(4, activation="relu"),
        layers.BatchNormalization(momentum=0.9), layers.Dense(3, activation="softmax")])
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def numpy_reestimation(model, x, batch_size):
    """The cumulative average of each BN's batch mean and biased batch variance, the
    forward pass written out: Dropout off, each BN normalizing with its batch's moments."""
    (w1, b1), (g1, be1, _, _), (w2, b2), (g2, be2, _, _) = [
        layer.get_weights() for layer in model.layers if layer.get_weights()][:4]
    eps1, eps2 = model.layers[2].epsilon, model.layers[4].epsilon
    sums = {"m1": 0, "v1": 0, "m2": 0, "v2": 0}
    count = 0
    for start in range(0, len(x), batch_size):
        xb = x[start:start + batch_size].astype(np.float64)
        h1 = np.maximum(xb @ w1 + b1, 0)
        m1, v1 = h1.mean(0), h1.var(0)
        n1 = g1 * (h1 - m1) / np.sqrt(v1 + eps1) + be1
        h2 = np.maximum(n1 @ w2 + b2, 0)
        m2, v2 = h2.mean(0), h2.var(0)
        for key, value in (("m1", m1), ("v1", v1), ("m2", m2), ("v2", v2)):
            sums[key] = sums[key] + value
        count += 1
    return {key: value / count for key, value in sums.items()}


def test_reestimated_moving_statistics_match_numpy_and_the_model_is_untouched():
    model = bn_mlp()
    rng = np.random.default_rng(0)
    x = rng.normal(1.5, 2.0, (24, 6)).astype("float32")
    model.fit(x, np.arange(24) % 3, epochs=2, batch_size=8, verbose=0)
    weights = [w.copy() for w in model.get_weights()]
    python_state, numpy_state = random.getstate(), np.random.get_state()[1].copy()
    repaired = reestimate_batchnorm(model, x, batches=3, batch_size=8)
    assert random.getstate() == python_state and np.array_equal(np.random.get_state()[1], numpy_state)
    assert all(np.array_equal(a, b) for a, b in zip(weights, model.get_weights()))
    expected = numpy_reestimation(model, x, 8)
    bn1, bn2 = [layer for layer in repaired.layers if isinstance(layer, layers.BatchNormalization)]
    np.testing.assert_allclose(bn1.moving_mean.numpy(), expected["m1"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(bn1.moving_variance.numpy(), expected["v1"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(bn2.moving_mean.numpy(), expected["m2"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(bn2.moving_variance.numpy(), expected["v2"], rtol=1e-5, atol=1e-5)
    assert (bn1.momentum, bn2.momentum) == (0.99, 0.9)  # the copy keeps the model's settings
    assert repaired.layers[1].rate == 0.0 and model.layers[1].rate == 0.5  # noise off in the copy only
    for ours, theirs in zip(repaired.get_weights(), model.get_weights()):  # only BN statistics differ
        assert ours.shape == theirs.shape


def test_regaudit_measures_the_remedy_at_train_end_before_and_after(mlflow_store):
    model = bn_mlp()
    rng = np.random.default_rng(1)
    x = rng.normal(1.5, 2.0, (96, 6)).astype("float32")
    y = (x[:, 0] > 1.5).astype("int64") + (x[:, 1] > 1.5)
    xv, yv = x[64:], y[64:]
    with mlflow.start_run() as run:
        model.fit(x[:64], y[:64], validation_data=(xv, yv), epochs=2, batch_size=16, verbose=0,
                  callbacks=[RegAudit(report=False, probe_size=32)])
    metrics = mlflow.MlflowClient().get_run(run.info.run_id).data.metrics
    before = model.evaluate(xv, yv, verbose=0, return_dict=True)  # the validation probe is all of it
    assert metrics["regaudit/model/bn_reestimated_val_accuracy_before"] == pytest.approx(before["accuracy"])
    assert metrics["regaudit/model/bn_reestimated_val_loss_before"] == pytest.approx(before["loss"], rel=1e-5)
    from regaudit.callbacks.probe.choice import _draw

    train_probe = _draw(x[:64], y[:64], "train", 32, 0 + 1)  # as large as the probe, seed + 1
    repaired = reestimate_batchnorm(model, train_probe.inputs, seed=0)
    after = repaired.evaluate(xv, yv, verbose=0, return_dict=True)
    assert metrics["regaudit/model/bn_reestimated_val_loss_after"] == pytest.approx(after["loss"], rel=1e-5)

    from regaudit.read import load_runs
    from regaudit.answer.remedy_findings import batchnorm_reestimated

    runs = load_runs([run.info.run_id])
    [found] = batchnorm_reestimated(runs, {run.info.run_id: "bn"})
    assert found.id == "RA213" and "(one run: no test)" in found.text
    assert found.numbers["before"] == pytest.approx(before["accuracy"])
