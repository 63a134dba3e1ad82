"""Invariants 1 and 2 of DESIGN.md: the audit never changes the model, and a failing
measure never stops training."""

import subprocess
import sys
import textwrap
import warnings

import keras
import numpy as np
import pytest

from regaudit import RegAudit, RegauditWarning
from regaudit.measures import activations
from regaudit.tracking.artifacts import download_tables

from model_zoo import data_for


def model_state(model):
    """Every variable that training or an audit could touch, copied to numpy."""
    state = {f"model/{i}/{v.path}": v.numpy() for i, v in enumerate(model.variables)}
    state.update({f"opt/{i}/{v.path}": v.numpy() for i, v in enumerate(model.optimizer.variables)})
    for layer in model._flatten_layers():
        generator = getattr(layer, "seed_generator", None)
        if generator is not None:
            state[f"seed/{layer.name}"] = generator.state.numpy()
    return state


def two_audits(model, callback):
    """Drive `callback` through one epoch of hooks on `model`, without training: the
    audit before training and the one after the epoch, then train end."""
    callback.set_model(model)
    callback.on_train_begin()
    callback.on_epoch_begin(0)
    callback.on_epoch_end(0)
    callback.on_train_end()
    return callback


def test_an_audit_leaves_every_variable_bit_identical(tiny_model, rng):
    model = tiny_model("dropout_batchnorm_cnn")
    x, y = data_for(model, 96, rng)
    model.fit(x, y, epochs=1, batch_size=32, verbose=0)  # optimizer slots and BN stats move
    before = model_state(model)
    assert any(key.startswith("seed/") for key in before)
    assert any("moving_variance" in key for key in before)

    callback = two_audits(model, RegAudit(probe=(x, y), strict=True))
    assert len(callback.audits) == 2

    after = model_state(model)
    assert before.keys() == after.keys()
    for key in before:
        np.testing.assert_array_equal(before[key], after[key], err_msg=key)


def test_fit_with_the_callback_ends_with_the_same_weights(tmp_path):
    """With fixed seeds and deterministic ops (a fresh process: op determinism is global)."""
    script = textwrap.dedent(f"""
        import os, numpy as np, keras, tensorflow as tf
        os.environ["MLFLOW_TRACKING_URI"] = "sqlite:///{tmp_path}/m.db"
        tf.config.experimental.enable_op_determinism()
        from regaudit import RegAudit
        from regaudit.callbacks.demo.seed_models import dropout_batchnorm_cnn

        def train(callbacks):
            keras.utils.set_random_seed(11)
            x = np.random.default_rng(0).normal(size=(160, 28, 28, 1)).astype("float32")
            y = np.random.default_rng(1).integers(0, 10, 160)
            model = dropout_batchnorm_cnn()
            model.compile("adam", "sparse_categorical_crossentropy")
            model.fit(x, y, epochs=2, batch_size=32, validation_split=0.2,
                      callbacks=callbacks, verbose=0)
            return [np.array(v) for v in model.variables]

        plain = train([])
        audited = train([RegAudit(strict=True)])
        assert len(plain) == len(audited)
        same = all(np.array_equal(a, b) for a, b in zip(plain, audited))
        print("SAME" if same else "DIFFERENT")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("SAME")


def test_a_failing_measure_warns_once_and_training_goes_on(tiny_model, rng, monkeypatch):
    model = tiny_model("dropout_mlp")  # dense, dropout: 128 units; dense_1: 10 units
    x, y = data_for(model, 64, rng)
    real_kurtosis = activations.ACTIVATION_MEASURES["kurtosis"]

    def fragile_kurtosis(summary):
        if summary.unit_sum.shape[0] == 10:
            raise FloatingPointError("injected")
        return real_kurtosis(summary)

    monkeypatch.setitem(activations.ACTIVATION_MEASURES, "kurtosis", fragile_kurtosis)
    callback = RegAudit(probe_size=32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(x, y, epochs=3, batch_size=32, callbacks=[callback], verbose=0)
    ours = [w for w in caught if issubclass(w.category, RegauditWarning)]
    assert len(ours) == 1
    assert "'kurtosis'" in str(ours[0].message) and "'dense_1'" in str(ours[0].message)
    assert len(history.history["loss"]) == 3 and len(callback.audits) == 4

    table = download_tables(callback.run_id)["activations"]
    kurt = table[table.measure == "kurtosis"]
    assert "dense_1" not in set(kurt.layer)
    assert sorted(kurt[kurt.layer == "dense"].epoch) == [0, 1, 2, 3]
    assert len(table[(table.layer == "dense_1") & (table.measure == "mean")]) == 4


def test_strict_re_raises_the_failing_measure(tiny_model, rng, monkeypatch):
    model = tiny_model("dropout_mlp")
    x, y = data_for(model, 32, rng)

    def broken(summary):
        raise FloatingPointError("injected")

    monkeypatch.setitem(activations.ACTIVATION_MEASURES, "skew", broken)
    with pytest.raises(FloatingPointError, match="injected"):
        model.fit(x, y, epochs=1, callbacks=[RegAudit(strict=True)], verbose=0)


class Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.hidden = keras.layers.Dense(8, activation="relu")
        self.drop = keras.layers.Dropout(0.3)
        self.out = keras.layers.Dense(3, activation="softmax")

    def call(self, x, training=False):
        return self.out(self.drop(self.hidden(x), training=training))


def test_a_subclassed_model_has_every_sublayer_measured_without_a_warning(rng):
    model = Subclassed()
    model.compile("adam", "sparse_categorical_crossentropy")
    x = rng.normal(size=(64, 5)).astype("float32")
    y = rng.integers(0, 3, 64)
    callback = RegAudit(probe_size=32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(x, y, epochs=2, callbacks=[callback], verbose=0)
    assert not [w for w in caught if issubclass(w.category, RegauditWarning)]
    assert len(history.history["loss"]) == 2
    tables = download_tables(callback.run_id)
    table = tables["activations"]
    probe = callback.probe_pass.probe.inputs
    final = table[table.epoch == 2].set_index(["layer", "measure"])["value"]
    hidden = keras.ops.convert_to_numpy(model.hidden(probe)).astype(np.float64)
    probs = model.predict(probe, verbose=0).astype(np.float64)
    assert final[(model.hidden.name, "mean")] == pytest.approx(hidden.mean(), rel=1e-5)
    assert final[(model.hidden.name, "std")] == pytest.approx(hidden.std(), rel=1e-5)
    assert final[(model.out.name, "std")] == pytest.approx(probs.std(), rel=1e-5)
    assert final[(model.name, "mean")] == pytest.approx(probs.mean(), rel=1e-5)
    ensemble = tables["ensemble"].set_index(["layer", "measure"])["value"]
    assert (model.drop.name, "drop_frac_measured") in ensemble.index
    assert ("model", "mc_acc") in ensemble.index


def test_no_data_for_the_probe_warns_and_training_goes_on(tiny_model, rng):
    model = tiny_model("dropout_mlp")
    x, y = data_for(model, 64, rng)

    def batches():
        while True:
            yield x[:32], y[:32]

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(batches(), steps_per_epoch=2, epochs=2, callbacks=[RegAudit()], verbose=0)
    ours = [str(w.message) for w in caught if issubclass(w.category, RegauditWarning)]
    assert len(ours) == 1 and "probe=(x, y)" in ours[0] and "generator" in ours[0]
    assert len(history.history["loss"]) == 2


def test_ctrl_c_during_an_audit_leaves_the_model_as_it_was_and_ends_the_run_killed(rng):
    """KeyboardInterrupt raised inside an audit (a measure family interrupted): the model's
    variables and seed state are bit-identical to before the audit, the run regaudit
    started is KILLED, and the same model trains again with a new RegAudit."""
    import keras
    import numpy as np
    from mlflow.tracking import MlflowClient

    from regaudit import RegAudit
    from regaudit.callbacks.families.activations import ActivationFamily

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dropout(0.3), keras.layers.BatchNormalization(),
                              keras.layers.Dense(2, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    snapshots = []

    class Snapshot(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            snapshots.append([np.array(v) for v in self.model.variables])

    class Interrupting(ActivationFamily):
        def measure(self, context):
            if context.epoch == 2:
                raise KeyboardInterrupt
            return super().measure(context)

    class Audit(RegAudit):
        family_types = (Interrupting,) + RegAudit.family_types[1:]

    audit = Audit(probe_size=16, mc_samples=2, report=False)
    x, y = rng.normal(size=(48, 6)).astype("float32"), rng.integers(0, 2, 48)
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, validation_split=0.25, epochs=4, verbose=0, callbacks=[Snapshot(), audit])
    after = [np.array(v) for v in model.variables]
    assert len(snapshots) == 2  # interrupted at the end of epoch 2, in the audit
    for before, now in zip(snapshots[-1], after):
        np.testing.assert_array_equal(before, now)
    assert MlflowClient().get_run(audit.run_id).info.status == "KILLED"
    again = RegAudit(probe_size=16, mc_samples=2, report=False)
    model.fit(x, y, validation_split=0.25, epochs=1, verbose=0, callbacks=[again])
    assert MlflowClient().get_run(again.run_id).info.status == "FINISHED"


def test_a_fit_stopped_between_audits_ends_its_run_when_the_next_fit_starts(rng, monkeypatch):
    """The notebook case: a cell's fit is stopped during a training step (no audit runs,
    Keras calls no on_train_end), so the run regaudit started stays open; when the cell
    runs fit again, that run is ended as KILLED (FAILED after another error, which IPython
    keeps in sys.last_type) and the new fit gets a run of its own, not the stale one."""
    import sys

    import keras
    import mlflow
    from mlflow.tracking import MlflowClient

    from regaudit import RegAudit
    from regaudit.errors import RegauditWarning

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dropout(0.3), keras.layers.Dense(2, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    x, y = rng.normal(size=(48, 6)).astype("float32"), rng.integers(0, 2, 48)

    class Stop(keras.callbacks.Callback):
        def __init__(self, error):
            super().__init__()
            self.error = error

        def on_train_batch_begin(self, batch, logs=None):
            if batch == 1:
                raise self.error

    audit = RegAudit(probe_size=16, mc_samples=2, report=False)
    runs = []
    for error, status in ((KeyboardInterrupt(), "KILLED"), (ValueError("user code"), "FAILED")):
        with pytest.raises(type(error)):
            model.fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[audit, Stop(error)])
        runs.append(audit.run_id)
        assert mlflow.active_run().info.run_id == audit.run_id  # Keras left it open
        if status == "KILLED":  # IPython keeps the stopped cell's KeyboardInterrupt there
            monkeypatch.setattr(sys, "last_type", KeyboardInterrupt, raising=False)
        else:  # an error the user's code caught: regaudit cannot see it
            monkeypatch.delattr(sys, "last_type", raising=False)
        with pytest.warns(RegauditWarning, match=f"never reached its end.*ended as {status}"):
            model.fit(x, y, epochs=1, batch_size=16, verbose=0, callbacks=[RegAudit(probe_size=16, report=False)]
                      if status == "FAILED" else [audit])
        assert MlflowClient().get_run(runs[-1]).info.status == status
    assert mlflow.active_run() is None  # the last fit ended its own run
    assert len(set(runs)) == 2


def test_host_families_run_beside_the_families_that_call_the_model():
    """`measure_families`: a family computing on the host only runs while the families
    calling the model run (here the model-calling one, first in order, sees the host one
    start), results keep the families' order, and a host family's error reaches the
    audit's thread."""
    import threading

    from regaudit.callbacks.audit.context import measure_families

    started = threading.Event()

    class Device:
        name = "device"

        def measure(self, context):
            return {}, {"saw_host": started.wait(10)}

    class Host:
        name = "host"

        def on_host(self, context):
            return True

        def measure(self, context):
            started.set()
            return {"t": [1]}, {}

    def guard(layer, measure, function, *args):
        return function(*args)

    out = measure_families([Device(), Host()], None, guard)
    assert out == [({}, {"saw_host": True}), ({"t": [1]}, {})]

    class Broken(Host):
        def measure(self, context):
            raise FloatingPointError("injected")

    with pytest.raises(FloatingPointError, match="injected"):
        measure_families([Device(), Broken()], None, guard)
