"""How the callback meets MLflow: which run it writes to, when, and at which steps."""

import keras
import mlflow
import pytest
from mlflow.tracking import MlflowClient

from regaudit import Every, RegAudit
from regaudit.errors import UsageError
from regaudit.tracking.artifacts import download_tables

from model_zoo import data_for


def test_joins_the_run_that_keras_autolog_opens(tiny_model, rng):
    model = tiny_model("dropout_mlp")
    x, y = data_for(model, 64, rng)
    mlflow.keras.autolog(log_models=False)
    try:
        callback = RegAudit(probe_size=32)
        model.fit(x, y, epochs=2, batch_size=32, callbacks=[callback], verbose=0)
    finally:
        mlflow.keras.autolog(disable=True)
    run = MlflowClient().get_run(callback.run_id)
    assert "regaudit/dense/mean" in run.data.metrics
    assert any(key.endswith("loss") for key in run.data.metrics)  # autolog's own metrics
    assert run.info.status == "FINISHED"
    assert mlflow.active_run() is None
    # autolog owns the run: its loss is logged once per epoch, not twice
    assert len(MlflowClient().get_metric_history(callback.run_id, "loss")) == 2


def test_keras_epoch_logs_are_run_metrics_in_a_run_regaudit_starts(tiny_model, rng):
    model = tiny_model("dropout_mlp")
    model.compile(optimizer=keras.optimizers.Adam(0.003), loss=model.loss, metrics=["accuracy"])
    x, y = data_for(model, 64, rng)
    callback = RegAudit(probe_size=32, schedule=Every(epochs=2))
    history = model.fit(x, y, epochs=3, batch_size=32, validation_split=0.25, callbacks=[callback],
                        verbose=0).history
    client = MlflowClient()
    for key in ("loss", "val_loss", "accuracy", "val_accuracy"):
        logged = client.get_metric_history(callback.run_id, key)
        assert [m.step for m in sorted(logged, key=lambda m: m.step)] == [1, 2, 3], key
        assert [m.value for m in sorted(logged, key=lambda m: m.step)] == pytest.approx(history[key])
    rates = client.get_metric_history(callback.run_id, "learning_rate")
    assert [m.value for m in rates] == pytest.approx([0.003] * 3)


def test_joins_an_active_run_and_leaves_it_open_with_keras_metrics_once_each(tiny_model, rng):
    """The most common setup, `with mlflow.start_run():` around `fit`: the run gets Keras'
    epoch logs as run metrics (sortable in the MLflow UI), each once per epoch."""
    model = tiny_model("dropout_mlp")
    model.compile(optimizer="adam", loss=model.loss, metrics=["accuracy"])
    x, y = data_for(model, 64, rng)
    with mlflow.start_run() as run:
        callback = RegAudit(probe_size=32, report=False)
        history = model.fit(x, y, epochs=2, validation_split=0.25, callbacks=[callback], verbose=0).history
        assert callback.run_id == run.info.run_id
        assert mlflow.active_run().info.run_id == run.info.run_id
        mlflow.log_metric("after_fit", 1.0)
    client = MlflowClient()
    assert client.get_run(run.info.run_id).data.metrics["after_fit"] == 1.0
    for key in ("loss", "val_loss", "accuracy", "val_accuracy"):
        logged = sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: m.step)
        assert [m.step for m in logged] == [1, 2], key
        assert [m.value for m in logged] == pytest.approx(history[key])


def test_every_audit_up_to_epoch_k_is_stored_by_the_end_of_epoch_k(tiny_model, rng):
    model = tiny_model("dropout_mlp")
    x, y = data_for(model, 64, rng)
    audit = RegAudit(probe_size=32)
    seen = {}

    class ReadBack(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            table = download_tables(audit.run_id)["activations"]
            seen[epoch + 1] = sorted(set(table.epoch))

    model.fit(x, y, epochs=3, batch_size=32, callbacks=[audit, ReadBack()], verbose=0)
    assert seen == {1: [0, 1], 2: [0, 1, 2], 3: [0, 1, 2, 3]}


def test_step_schedule_audits_every_n_steps_at_those_steps(tiny_model, rng):
    model = tiny_model("dropout_mlp")
    x, y = data_for(model, 80, rng)  # 10 steps per epoch
    callback = RegAudit(probe_size=16, schedule=Every(steps=4))
    model.fit(x, y, epochs=2, batch_size=8, callbacks=[callback], verbose=0)
    assert [a["step"] for a in callback.audits] == [0, 4, 8, 12, 16]
    assert [a["epoch"] for a in callback.audits] == [0, 0, 0, 1, 1]
    history = MlflowClient().get_metric_history(callback.run_id, "regaudit/dense/std")
    assert [m.step for m in history] == [0, 4, 8, 12, 16]
    assert MlflowClient().get_run(callback.run_id).data.tags["regaudit.step_unit"] == "step"


def test_every_n_epochs(tiny_model, rng):
    model = tiny_model("dropout_mlp")
    x, y = data_for(model, 32, rng)
    callback = RegAudit(probe_size=16, schedule=Every(epochs=2))
    model.fit(x, y, epochs=5, callbacks=[callback], verbose=0)
    assert [a["epoch"] for a in callback.audits] == [0, 2, 4]


def test_one_instance_reused_across_fits_in_one_run_keeps_both(tiny_model, rng):
    model = tiny_model("dropout_mlp")
    x, y = data_for(model, 32, rng)
    callback = RegAudit(probe_size=16)
    with mlflow.start_run():
        model.fit(x, y, epochs=1, callbacks=[callback], verbose=0)
        model.fit(x, y, epochs=2, callbacks=[callback], verbose=0)
    table = download_tables(callback.run_id)["activations"]
    dense_means = table[(table.layer == "dense") & (table.measure == "mean")]
    # nothing of the first fit overwritten; the second fit's audit before its first step
    # (Keras numbers its epochs from 0 again) repeats the first fit's last audit (the model
    # has not trained since) at an MLflow step the run holds, so it is not written again
    assert sorted(zip(dense_means.epoch, dense_means.step)) == [(0, 0), (1, 1), (1, 2), (2, 3)]


@pytest.mark.parametrize("arguments, fragment", [
    ({"probe_size": 0}, "probe_size=0"),
    ({"probe_batch_size": 2.5}, "probe_batch_size=2.5"),
    ({"schedule": "weekly"}, "schedule='weekly'"),
    ({"gradient_ics": "weekly"}, "gradient_ics='weekly'"),
    ({"mc_samples": 0}, "mc_samples=0"),
])
def test_bad_arguments_fail_in_the_constructor_with_what_was_received(arguments, fragment):
    with pytest.raises(UsageError) as error:
        RegAudit(**arguments)
    assert fragment in str(error.value) and "expects" in str(error.value)


def test_every_takes_exactly_one_positive_count():
    with pytest.raises(UsageError, match="exactly one of epochs= or steps="):
        Every()
    with pytest.raises(UsageError, match="exactly one of epochs= or steps="):
        Every(epochs=1, steps=10)
    with pytest.raises(UsageError, match="received steps=0"):
        Every(steps=0)


def test_two_regaudit_callbacks_in_one_fit_write_once(rng):
    """A second regaudit callback in the same fit stays off with one warning: every
    audit is in the run once. The same callbacks in a later fit work again."""
    import keras
    from mlflow.tracking import MlflowClient

    from regaudit.callbacks import ActivationStats, RegAudit
    from regaudit.tracking.artifacts import download_tables

    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4, activation="relu"),
                              keras.layers.Dropout(0.2), keras.layers.Dense(2, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    x, y = rng.normal(size=(48, 6)).astype("float32"), rng.integers(0, 2, 48)
    first, second = RegAudit(probe_size=16, mc_samples=2, report=False), ActivationStats(probe_size=16)
    with pytest.warns(Warning, match="already audits this fit"):
        model.fit(x, y, validation_split=0.25, epochs=2, verbose=0, callbacks=[first, second])
    assert second.run_id is None and first.run_id is not None
    acts = download_tables(first.run_id)["activations"]
    assert acts.groupby(["epoch", "layer", "measure"]).size().max() == 1
    history = MlflowClient().get_metric_history(first.run_id, "regaudit/dense/mean")
    assert sorted(m.step for m in history) == [0, 1, 2]
    model.fit(x, y, validation_split=0.25, epochs=1, verbose=0, callbacks=[second])
    assert second.run_id is not None


def test_beside_mlflows_own_keras_callback_each_writes_once(tiny_model, rng):
    """`mlflow.keras.MlflowCallback` in the user's run with RegAudit: MLflow's callback logs
    Keras' metrics (once per epoch: RegAudit sees MLflow's callback in the fit and does not
    repeat them), RegAudit its audits once each."""
    model = tiny_model("dropout_mlp")
    x, y = data_for(model, 64, rng)
    with mlflow.start_run() as run:
        audit = RegAudit(probe_size=32, report=False)
        model.fit(x, y, epochs=2, batch_size=32, callbacks=[mlflow.keras.MlflowCallback(run), audit],
                  verbose=0)
    client = MlflowClient()
    assert audit.run_id == run.info.run_id
    loss = client.get_metric_history(run.info.run_id, "loss")
    assert len(loss) == 2  # MLflow's callback: once per epoch
    acts = download_tables(run.info.run_id)["activations"]
    assert acts.groupby(["epoch", "layer", "measure"]).size().max() == 1
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "regaudit/dense/mean")) == [0, 1, 2]


BACKGROUND_SCRIPT = '''
import json, sys
import numpy as np
import keras
from regaudit import RegAudit

assert "mlflow" not in sys.modules  # the README's script: MLflow never imported by the user
rng = np.random.default_rng(0)
x, y = rng.normal(size=(96, 12)).astype("float32"), rng.integers(0, 3, 96)
keras.utils.set_random_seed(0)
model = keras.Sequential([keras.Input((12,)), keras.layers.Dense(16, activation="relu"),
                          keras.layers.Dropout(0.3), keras.layers.BatchNormalization(),
                          keras.layers.Dense(3, activation="softmax")])
model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
audit = RegAudit(probe_size=16, mc_samples=2, report=False)
active = {}

class Active(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 2:
            import mlflow
            active["run"] = mlflow.active_run().info.run_id
history = model.fit(x, y, validation_split=0.25, epochs=3, batch_size=16, verbose=0,
                    callbacks=[audit, Active()]).history
import mlflow
print("RESULT " + json.dumps({"run_id": audit.run_id, "background": audit.run.opened_in_background,
                              "active": active.get("run"), "after": mlflow.active_run() is None,
                              "val_loss": history["val_loss"]}))
'''


def test_a_script_that_never_imports_mlflow_opens_the_run_while_it_trains(tmp_path, monkeypatch):
    """The README's script: the run opens in the background (`audit.run.RunOpener`), the audit
    before the first step is held and written once it is open; the run ends up exactly
    as one opened at once: every audit once, Keras' metrics once, MLflow's active run
    during the fit, FINISHED and no longer active after."""
    import json
    import os
    import subprocess
    import sys

    script = tmp_path / "train.py"
    script.write_text(BACKGROUND_SCRIPT)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          env=dict(os.environ), timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "regaudit:" not in done.stderr, done.stderr[-3000:]  # no warning of any kind
    result = json.loads(done.stdout.split("RESULT ")[1])
    assert result["background"] is True
    assert result["active"] == result["run_id"] and result["after"] is True
    client = MlflowClient()
    run = client.get_run(result["run_id"])
    assert run.info.status == "FINISHED" and run.data.tags["regaudit.report"] == "0"
    tables = download_tables(result["run_id"])
    acts = tables["activations"]
    assert acts.groupby(["epoch", "layer", "measure"]).size().max() == 1
    assert sorted(set(acts.epoch)) == [0, 1, 2, 3]
    assert set(acts.run) == {result["run_id"]}  # the held audit got the run's id too
    assert "model" in tables and "meta" in tables
    logged = sorted(client.get_metric_history(result["run_id"], "val_loss"), key=lambda m: m.step)
    assert [m.value for m in logged] == pytest.approx(result["val_loss"])
    steps = sorted(m.step for m in client.get_metric_history(result["run_id"], "regaudit/model/audit_seconds"))
    assert steps == [0, 1, 2, 3]
