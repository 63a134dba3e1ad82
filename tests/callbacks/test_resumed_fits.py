"""Resumed fits as users run them: one callback for two fits, a fresh callback per fit in
one `mlflow.start_run()`, Keras' `BackupAndRestore` after an interruption. Every audit is
labelled with the epoch and optimizer step the model is at, no MLflow step holds two
values, and the first resumed drift is taken against the last audit of the same model."""

import warnings

import keras
import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from regaudit import RegAudit
from regaudit.measures.shift import DRIFT_MEASURES
from regaudit.tracking.artifacts import download_tables

from regaudit.callbacks.probe.probe_pass import ProbePass

SAMPLES, BATCH = 128, 32
STEPS = SAMPLES // BATCH  # optimizer steps per epoch


def _model(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((6,))
    x = keras.layers.Dense(12, activation="relu")(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Dropout(0.3)(x)
    model = keras.Model(inputs, keras.layers.Dense(3)(x), name="resumable")
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    return model


def _data():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(SAMPLES + 48, 6)).astype("float32")
    y = (x[:, 0] > 0).astype("int64") + (x[:, 1] > 0)
    return (x[:SAMPLES], y[:SAMPLES]), (x[SAMPLES:], y[SAMPLES:])


def _labels(run_id, table="activations"):
    frame = download_tables(run_id)[table]
    return sorted(set(zip(frame.epoch, frame.step)))


def _one_value_per_step(run_id, key):
    history = MlflowClient().get_metric_history(run_id, key)
    steps = [m.step for m in history]
    assert len(steps) == len(set(steps)), (key, sorted(steps))
    return sorted(steps)


class _Weights(keras.callbacks.Callback):
    """The model's weights at the end of every epoch, by epoch count."""

    def __init__(self):
        super().__init__()
        self.at = {}

    def on_epoch_end(self, epoch, logs=None):
        self.at[epoch + 1] = self.model.get_weights()


def _drift(model, probe, weights_before, weights_after, layer):
    """drift_w1 of `layer` between two sets of weights, with a pass of its own."""
    saved = model.get_weights()
    try:
        summaries = []
        for weights in (weights_before, weights_after):
            model.set_weights(weights)
            probe_pass = ProbePass(model, probe, seed=0)
            summaries.append(probe_pass.run()[0])
        return DRIFT_MEASURES["drift_w1"](summaries[0][layer], summaries[1][layer])
    finally:
        model.set_weights(saved)


def test_one_callback_for_two_fits_labels_the_second_with_the_models_epoch_and_step():
    (x, y), val = _data()
    model = _model()
    callback = RegAudit(strict=True)
    model.fit(x, y, epochs=2, batch_size=BATCH, validation_data=val, callbacks=[callback], verbose=0)
    first = callback.run_id
    model.fit(x, y, initial_epoch=2, epochs=4, batch_size=BATCH, validation_data=val,
              callbacks=[callback], verbose=0)
    expected = [(2, 2 * STEPS), (3, 3 * STEPS), (4, 4 * STEPS)]
    assert [(a["epoch"], a["step"]) for a in callback.audits] == expected
    assert callback.run_id != first  # the callback started a run per fit
    assert _labels(callback.run_id) == expected
    history = download_tables(callback.run_id)["history"]
    assert sorted(set(history.epoch)) == [3, 4]
    assert _one_value_per_step(callback.run_id, "regaudit/model/dead_frac_mean") == [2, 3, 4]


def test_fresh_callbacks_in_one_run_write_each_step_once_and_drift_from_the_last_audit():
    (x, y), val = _data()
    model = _model()
    weights = _Weights()
    with mlflow.start_run() as run:
        first = RegAudit(strict=True)
        model.fit(x, y, epochs=2, batch_size=BATCH, validation_data=val, callbacks=[first, weights],
                  verbose=0)
        second = RegAudit(strict=True)
        with warnings.catch_warnings(record=True):
            warnings.simplefilter("always")
            model.fit(x, y, initial_epoch=2, epochs=4, batch_size=BATCH, validation_data=val,
                      callbacks=[second, weights], verbose=0)
    assert [(a["epoch"], a["step"]) for a in first.audits] == [(0, 0), (1, STEPS), (2, 2 * STEPS)]
    # the pre-fit audit of the resumed fit repeats the first fit's last one: not written
    assert [(a["epoch"], a["step"]) for a in second.audits] == [(3, 3 * STEPS), (4, 4 * STEPS)]
    run_id = run.info.run_id
    assert _labels(run_id) == [(e, e * STEPS) for e in range(5)]
    for key in ("regaudit/model/dead_frac_mean", "regaudit/model/audit_seconds", "regaudit/model/mc_acc"):
        assert _one_value_per_step(run_id, key) == [0, 1, 2, 3, 4], key
    shift = download_tables(run_id)["shift"]
    layer = second.probe_pass.taps[0].name
    stored = shift[(shift.epoch == 3) & (shift.layer == layer) & (shift.measure == "drift_w1")].value
    assert len(stored) == 1
    expected = _drift(model, second.probe_pass.probe, weights.at[2], weights.at[3], layer)
    assert stored.iloc[0] == pytest.approx(expected, rel=1e-9, abs=1e-12)


class _Interrupt(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 2:
            raise RuntimeError("preempted")


def test_backup_and_restore_resumes_with_audits_labelled_where_the_model_is(tmp_path):
    (x, y), val = _data()
    backup = str(tmp_path / "backup")
    model = _model()
    with pytest.raises(RuntimeError, match="preempted"):
        model.fit(x, y, epochs=4, batch_size=BATCH, validation_data=val, verbose=0,
                  callbacks=[keras.callbacks.BackupAndRestore(backup), RegAudit(strict=True), _Interrupt()])
    restarted = _model(seed=7)  # a new process would build the model anew
    callback = RegAudit(strict=True)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")  # the interrupted fit's run is ended, and said
        # regaudit first: BackupAndRestore restores after this callback's on_train_begin
        restarted.fit(x, y, epochs=4, batch_size=BATCH, validation_data=val, verbose=0,
                      callbacks=[callback, keras.callbacks.BackupAndRestore(backup)])
    expected = [(2, 2 * STEPS), (3, 3 * STEPS), (4, 4 * STEPS)]
    assert [(a["epoch"], a["step"]) for a in callback.audits] == expected
    assert _labels(callback.run_id) == expected
    assert _one_value_per_step(callback.run_id, "regaudit/model/dead_frac_mean") == [2, 3, 4]
