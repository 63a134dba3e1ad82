"""Odd and hostile inputs: correct numbers, or one line at the boundary."""

import warnings

import numpy as np
import pytest

from regaudit import RegAudit, RegauditWarning
from regaudit.errors import UsageError
from regaudit.tracking.artifacts import download_tables


@pytest.fixture(autouse=True)
def local_store(mlflow_store, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_store)


def final(callback, table="activations"):
    frame = download_tables(callback.run_id)[table]
    last = frame[frame.epoch == frame.epoch.max()]
    return {(r.layer, r.measure): r.value for r in last.itertuples()}


def mlp(inputs=(8,), **kwargs):
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input(inputs), keras.layers.Dense(6, activation="relu", name="dense", **kwargs),
                              keras.layers.Dropout(0.2, name="drop"),
                              keras.layers.Dense(3, activation="softmax", name="out")])
    model.compile("adam", "sparse_categorical_crossentropy")
    return model


def data(rng, n=64, features=8):
    return rng.normal(size=(n, features)).astype("float32"), rng.integers(0, 3, n)


def test_a_constant_layer_has_std_zero_and_no_division_by_zero(rng):
    x, y = data(rng)
    model = mlp(kernel_initializer="zeros", bias_initializer="ones", trainable=False)
    callback = RegAudit(strict=True, report=False, probe_size=32)
    model.fit(x, y, epochs=1, validation_split=0.5, callbacks=[callback], verbose=0)
    values = final(callback)
    assert values[("dense", "std")] == 0.0 and values[("dense", "mean")] == 1.0
    assert np.isnan(values[("dense", "skew")]) and values[("dense", "dead_frac")] == 0.0
    shift = final(callback, "shift")
    assert np.isnan(shift[("dense", "drift_w1")])  # no spread to measure a shift against


def test_probe_sizes_at_the_edges(rng):
    x, y = data(rng, 40)
    big = RegAudit(probe_size=10_000, report=False, strict=True)
    mlp().fit(x, y, epochs=1, validation_split=0.25, callbacks=[big], verbose=0)
    assert big.probe_pass.probe.size == 10  # every validation sample, no more
    one = RegAudit(probe_size=1, report=False, strict=True)
    mlp().fit(x, y, epochs=1, validation_split=0.25, callbacks=[one], verbose=0)
    assert one.probe_pass.probe.size == 1
    assert final(one)[("dense", "mean")] >= 0
    with pytest.raises(UsageError, match="probe") as empty:
        RegAudit(probe=(x[:0], y[:0]))
    assert "\n" not in str(empty.value)


def test_integer_inputs_through_an_embedding(rng):
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((5,), dtype="int32"), keras.layers.Embedding(20, 4, name="embed"),
                              keras.layers.GlobalAveragePooling1D(name="pool"),
                              keras.layers.Dense(2, activation="softmax", name="out")])
    model.compile("adam", "sparse_categorical_crossentropy")
    x = rng.integers(0, 20, (48, 5)).astype("int32")
    y = rng.integers(0, 2, 48)
    callback = RegAudit(strict=True, report=False)
    model.fit(x, y, epochs=1, validation_split=0.25, callbacks=[callback], verbose=0)
    values = final(callback)
    embedded = model.get_layer("embed")(x[36:]).numpy()
    assert values[("embed", "mean")] == pytest.approx(embedded.mean(), rel=1e-5)


def test_mixed_float16_is_measured_in_float32(rng):
    import keras

    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        x, y = data(rng)
        model = mlp()
        callback = RegAudit(strict=True, report=False, probe_size=32)
        model.fit(x, y, epochs=1, validation_split=0.5, callbacks=[callback], verbose=0)
        probe = callback.probe_pass.probe.inputs
        hidden = keras.Model(model.inputs, model.get_layer("dense").output).predict(probe, verbose=0)
        assert hidden.dtype == np.float16
    finally:
        keras.mixed_precision.set_global_policy("float32")
    values = final(callback)
    assert values[("dense", "mean")] == pytest.approx(hidden.astype(np.float32).mean(), rel=1e-3)
    assert values[("dense", "std")] == pytest.approx(hidden.astype(np.float32).std(), rel=1e-3)


def test_masking_and_an_rnn_are_measured_as_keras_computes_them(rng):
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6, 3)), keras.layers.Masking(0.0, name="mask"),
                              keras.layers.LSTM(4, name="lstm"),
                              keras.layers.Dense(2, activation="softmax", name="out")])
    model.compile("adam", "sparse_categorical_crossentropy")
    x = rng.normal(size=(40, 6, 3)).astype("float32")
    x[:, 4:] = 0.0  # padded steps the mask must hide from the LSTM
    y = rng.integers(0, 2, 40)
    callback = RegAudit(strict=True, report=False)
    model.fit(x, y, epochs=1, validation_split=0.25, callbacks=[callback], verbose=0)
    values = final(callback)
    probe = callback.probe_pass.probe.inputs
    lstm = keras.Model(model.inputs, model.get_layer("lstm").output).predict(probe, verbose=0)
    assert values[("lstm", "mean")] == pytest.approx(lstm.mean(), rel=1e-5)


def test_datasets_instead_of_arrays_including_an_infinite_one(rng):
    import tensorflow as tf

    x, y = data(rng, 96)
    train = tf.data.Dataset.from_tensor_slices((x[:64], y[:64])).batch(16)
    val = tf.data.Dataset.from_tensor_slices((x[64:], y[64:])).batch(16)
    callback = RegAudit(strict=True, report=False, probe_size=24)
    mlp().fit(train, validation_data=val, epochs=2, callbacks=[callback], verbose=0)
    assert callback.probe_pass.probe.source == "val" and callback.probe_pass.probe.size == 24
    assert set(download_tables(callback.run_id)["activations"].epoch) == {0, 1, 2}

    endless = tf.data.Dataset.from_tensor_slices((x, y)).repeat().batch(16)
    forever = RegAudit(probe=(x[:20], y[:20]), probe_size=40, strict=True, report=False)
    mlp().fit(endless, steps_per_epoch=3, epochs=2, callbacks=[forever], verbose=0)
    assert forever.probe_pass.probe.size == 20
    assert set(download_tables(forever.run_id)["activations"].epoch) == {0, 1, 2}

    # without probe= the training pipeline is not read (its map and shuffle would move):
    # one warning that asks for probe=, and the history still reaches MLflow
    unread = RegAudit(probe_size=40, report=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mlp().fit(endless, steps_per_epoch=3, epochs=2, callbacks=[unread], verbose=0)
    said = [str(w.message) for w in caught if issubclass(w.category, RegauditWarning)]
    assert len(said) == 1 and "probe=(x, y)" in said[0] and "Dataset" in said[0]
    tables = download_tables(unread.run_id)
    assert "activations" not in tables and sorted(set(tables["history"].epoch)) == [1, 2]


TWO_PROCESSES = """
import sys
import numpy as np
import keras
from regaudit import RegAudit
keras.utils.set_random_seed(int(sys.argv[1]))
model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(6, activation="relu", name="hidden"),
                          keras.layers.Dropout(0.2), keras.layers.Dense(3, activation="softmax")])
model.compile("adam", "sparse_categorical_crossentropy")
rng = np.random.default_rng(int(sys.argv[1]))
audit = RegAudit(report=False, probe_size=32)
model.fit(rng.normal(size=(256, 8)).astype("float32"), rng.integers(0, 3, 256), epochs=2,
          batch_size=8, validation_split=0.25, callbacks=[audit], verbose=0)
print("RUN", audit.run_id)
"""


def test_four_trials_starting_at_once_on_a_fresh_sqlite_store_all_survive(tmp_path, monkeypatch):
    """Four training processes start together on a store that does not exist yet (a tuner's
    trials): MLflow's schema creation races between them (seen: "duplicate column name:
    step"). A trial that cannot create its run keeps it pending and creates it at its next
    replay; after `regaudit sync` (for anything still spooled) there are four complete
    runs, every audit once."""
    import os
    import subprocess
    import sys

    from click.testing import CliRunner

    from regaudit.cli import cli

    store = f"sqlite:///{tmp_path}/fresh.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    monkeypatch.setenv("REGAUDIT_SPOOL_DIR", str(tmp_path / "spool"))
    script = tmp_path / "train.py"
    script.write_text(TWO_PROCESSES)
    env = dict(os.environ, MLFLOW_TRACKING_URI=store, REGAUDIT_SPOOL_DIR=str(tmp_path / "spool"))
    processes = [subprocess.Popen([sys.executable, str(script), str(seed)], env=env, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE) for seed in (1, 2, 3, 4)]
    outputs = [p.communicate(timeout=600) for p in processes]
    for process, (out, err) in zip(processes, outputs):
        assert process.returncode == 0, err[-2000:]
    synced = CliRunner().invoke(cli, ["sync"], env={"MLFLOW_TRACKING_URI": store})
    assert synced.exit_code == 0, synced.output
    run_ids = [out.split("RUN ")[1].split()[0] for out, _ in outputs]
    created = {line.split("into the new MLflow run ")[1].split(",")[0]: line.split()[1].rstrip(":")
               for line in synced.output.splitlines() if "into the new MLflow run" in line}
    run_ids = [next((new for new, old in created.items() if old == r), r) for r in run_ids]
    assert len(set(run_ids)) == 4 and not any(r.startswith("pending-") for r in run_ids)
    for run_id in run_ids:
        acts = download_tables(run_id)["activations"]
        assert sorted(set(acts.epoch)) == [0, 1, 2]
        assert acts.groupby(["epoch", "layer", "measure"]).size().max() == 1


def test_several_outputs_are_each_measured(rng):
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8,))
    hidden = keras.layers.Dropout(0.3, name="drop")(keras.layers.Dense(8, activation="relu", name="dense")(inputs))
    heads = [keras.layers.Dense(3, activation="softmax", name="cls")(hidden),
             keras.layers.Dense(1, name="reg")(hidden)]
    model = keras.Model(inputs, heads)
    model.compile("adam", ["sparse_categorical_crossentropy", "mse"])
    x = rng.normal(size=(64, 8)).astype("float32")
    targets = [rng.integers(0, 3, 64), rng.normal(size=(64, 1)).astype("float32")]
    callback = RegAudit(strict=True, report=False, probe=(x[:32], [t[:32] for t in targets]))
    model.fit(x, targets, epochs=1, callbacks=[callback], verbose=0)
    values = final(callback)
    cls, reg = keras.Model(inputs, heads).predict(x[:32], verbose=0)
    assert values[("cls", "mean")] == pytest.approx(cls.mean(), rel=1e-5)
    assert values[("reg", "std")] == pytest.approx(reg.std(), rel=1e-5)
    ensemble = final(callback, "ensemble")
    assert ("model:0", "mc_acc") in ensemble and ("model:1", "pred_var") in ensemble
