"""RegAudit's activation statistics, read back from MLflow, against numpy/scipy on the
same probe tensors taken through Keras sub-models."""

import keras
import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from regaudit import RegAudit
from regaudit.measures.activations import ACTIVATION_MEASURES
from regaudit.measures.registry import headline_names
from regaudit.schema import metric_key
from regaudit.tracking.artifacts import download_tables

from model_zoo import MODEL_FACTORIES, data_for, reference_measures, tap_outputs

EXPECTED_TAPS = {
    "dropout_mlp": ["dense", "dropout", "dense_1"],
    "batchnorm_cnn": ["conv2d", "batch_normalization", "max_pooling2d", "flatten", "dense"],
    "dropout_batchnorm_cnn": [
        "conv2d", "batch_normalization", "max_pooling2d", "dropout", "conv2d_1",
        "batch_normalization_1", "flatten", "dropout_1", "dense",
    ],
    "two_input_nested": [
        "da", "concat", "block/block_dense", "block/block_drop", "block/block_bn", "head",
    ],
    "shared_layer": ["shared", "mid", "shared:1", "out"],
}
#: the taps whose output is ReLU-like (a relu activation), where dead units arise: only
#: they get dead_frac ("units that never fire"; not the Dropout or pooling after one)
RELU_TAPS = {"dropout_mlp": {"dense"}, "batchnorm_cnn": {"conv2d"},
             "dropout_batchnorm_cnn": {"conv2d", "conv2d_1"}, "two_input_nested": {"da"},
             "shared_layer": {"shared", "shared:1"}}


@pytest.mark.parametrize("name", list(MODEL_FACTORIES))
def test_every_measure_matches_numpy_on_the_same_probe_tensors(name, tiny_model, rng):
    model = tiny_model(name)
    x, y = data_for(model, 150, rng)
    callback = RegAudit(probe_size=100, strict=True)
    model.fit(x, y, epochs=2, batch_size=32, validation_split=0.2, callbacks=[callback], verbose=0)

    taps = [tap.name for tap in callback.probe_pass.taps]
    assert sorted(taps) == sorted(EXPECTED_TAPS[name])
    assert callback.probe_pass.probe.source == "val" and callback.probe_pass.probe.size == 30

    tables = download_tables(callback.run_id)
    final = tables["activations"].query("epoch == 2")
    histograms = tables["histograms"].query("epoch == 2")
    tensors = tap_outputs(model, callback.probe_pass.probe.inputs)
    for tap in callback.probe_pass.taps:
        want = reference_measures(
            tensors[tap.name], callback.probe_pass.reservoir_index[tap.name], tap.bounds)
        got = final[final.layer == tap.name].set_index("measure")["value"]
        assert set(got.index) == {m for m in ACTIVATION_MEASURES if (m != "sat_frac" or tap.bounds)
                                  and (m != "dead_frac" or tap.name in RELU_TAPS[name])}
        scale = max(want["std"], 1e-6)
        for measure in got.index:
            expected = want[measure]
            if measure in ("skew", "kurtosis") and np.isnan(expected):
                assert np.isnan(got[measure]), (tap.name, measure)
                continue
            if measure in ("p01", "p15", "p50", "p85", "p99"):
                # the same reservoir positions; the compiled pass may fuse a layer's ops
                # (matmul, bias, activation) and round differently from the eager reference
                # in the last float32 bits on some CPUs
                assert got[measure] == pytest.approx(expected, rel=1e-6, abs=1e-5 * scale), (
                    tap.name, measure)
                continue
            # 1e-5 relative; location measures relative to the tensor's spread
            atol = 1e-5 * scale if measure in ("mean", "min", "max", "unit_mean_spread") else 1e-7
            assert got[measure] == pytest.approx(expected, rel=1e-5, abs=atol), (tap.name, measure)
        counts, edges = want["histogram"]
        hist = histograms[histograms.layer == tap.name].sort_values("bin")
        np.testing.assert_array_equal(hist["count"].to_numpy(), counts)
        # an edge near zero is compared against the histogram's width (JAX's compiled pass
        # rounds a fused layer in the last float32 bits: 7e-9 on an edge of 0.0038)
        np.testing.assert_allclose(hist["left"].to_numpy(), edges[:-1], rtol=1e-6,
                                   atol=1e-6 * (edges[-1] - edges[0]))


@pytest.mark.parametrize("name", list(MODEL_FACTORIES))
def test_headline_metrics_for_every_tapped_layer(name, tiny_model, rng):
    model = tiny_model(name)
    x, y = data_for(model, 64, rng)
    callback = RegAudit(probe_size=32)
    model.fit(x, y, epochs=1, batch_size=32, callbacks=[callback], verbose=0)
    client = MlflowClient()
    metrics = client.get_run(callback.run_id).data.metrics
    for tap in callback.probe_pass.taps:
        for measure in headline_names("activations"):
            if measure not in ("mean", "std", "dead_frac", "sat_frac"):
                continue  # the model-level ones
            key = metric_key(tap.name, measure)
            if (measure == "sat_frac" and tap.bounds is None) or (
                    measure == "dead_frac" and tap.name not in RELU_TAPS[name]):
                assert key not in metrics
                continue
            assert key in metrics, key
            steps = [m.step for m in client.get_metric_history(callback.run_id, key)]
            assert steps == [0, 1]
    assert ("regaudit/model/dead_frac_mean" in metrics) == bool(RELU_TAPS[name])


def test_tags_meta_and_layer_table(tiny_model, rng):
    model = tiny_model("dropout_batchnorm_cnn")
    x, y = data_for(model, 64, rng)
    callback = RegAudit(probe_size=40, seed=3)
    model.fit(x, y, epochs=1, batch_size=32, callbacks=[callback], verbose=0)
    run = MlflowClient().get_run(callback.run_id)
    tags = run.data.tags
    assert tags["regaudit.setup"] == "dropout+batchnorm"
    assert tags["regaudit.dropout_rates"] == "0.25,0.5"
    assert tags["regaudit.batchnorm_layers"] == "2"
    assert tags["regaudit.batchnorm_placement"] == "after_activation"
    assert tags["regaudit.probe_source"] == "train" and tags["regaudit.probe_size"] == "40"
    tables = download_tables(callback.run_id)
    assert tables["meta"]["probe"] == {"source": "train", "size": 40, "seed": 3,
                                       "batch_size": 128, "reservoir_size": 65536}
    layers = {row["name"]: row for row in tables["model"]["layers"]}
    assert layers["conv2d"]["params"] == 3 * 3 * 32 + 32
    assert layers["batch_normalization"]["sources"] == ["conv2d"]
    assert layers["dropout_1"]["rate"] == 0.5
    assert mlflow.active_run() is None  # the run the callback started is ended


def test_probe_is_seeded_and_comes_from_the_user_when_given(tiny_model, rng):
    model = tiny_model("dropout_mlp")
    x, y = data_for(model, 300, rng)
    first = RegAudit(probe_size=50, seed=5)
    model.fit(x, y, epochs=1, callbacks=[first], verbose=0)
    second = RegAudit(probe_size=50, seed=5)
    model.fit(x, y, epochs=1, callbacks=[second], verbose=0)
    np.testing.assert_array_equal(first.probe_pass.probe.indices, second.probe_pass.probe.indices)
    np.testing.assert_array_equal(first.probe_pass.probe.inputs, x[first.probe_pass.probe.indices])
    assert len(set(first.probe_pass.probe.indices)) == 50

    user = RegAudit(probe=(x[:7], y[:7]))
    model.fit(x, y, epochs=1, callbacks=[user], verbose=0)
    assert user.probe_pass.probe.source == "user"
    np.testing.assert_array_equal(user.probe_pass.probe.inputs, x[:7])


def test_nan_and_inf_activations_are_counted_and_the_rest_measured_over_finite_values(rng):
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((5,)),
        keras.layers.Dense(4, activation="relu", name="dense"),
        keras.layers.Dense(3, activation="tanh", name="out"),
    ])
    model.compile("adam", "mse")
    x = rng.normal(size=(40, 5)).astype("float32")
    probe = x.copy()
    probe[2, :] = np.nan  # a whole sample: NaN in every unit downstream
    probe[7, 1] = np.inf
    callback = RegAudit(probe=(probe,), strict=True)
    model.fit(x, rng.normal(size=(40, 3)), epochs=1, callbacks=[callback], verbose=0)

    final = download_tables(callback.run_id)["activations"].query("epoch == 1")
    tensors = tap_outputs(model, probe)
    for tap in callback.probe_pass.taps:
        values = tensors[tap.name]
        assert not np.isfinite(values).all()
        want = reference_measures(values, callback.probe_pass.reservoir_index[tap.name], tap.bounds)
        got = final[final.layer == tap.name].set_index("measure")["value"]
        assert got["nonfinite_frac"] == pytest.approx(want["nonfinite_frac"], rel=1e-12)
        for measure in ("mean", "std", "skew", "kurtosis", "min", "max", "rms", "zero_frac",
                        "p50", "abs_mean") + (("dead_frac",) if tap.name == "dense" else ()):
            assert got[measure] == pytest.approx(want[measure], rel=1e-5, abs=1e-7), (tap.name, measure)
        if tap.bounds:
            assert got["sat_frac"] == pytest.approx(want["sat_frac"], rel=1e-12)


def test_dead_units_are_counted_where_they_arise_and_ra220_names_only_that_layer(rng):
    """conv2d(relu) with 3 of its 8 channels killed (a bias of -100), then MaxPooling,
    Dropout and Flatten: only the ReLU output gets dead_frac (3/8, as numpy counts it),
    and RA220 names it once, not again for each layer that passes its channels on."""
    from keras import layers

    from regaudit.answer.run_findings import findings
    from regaudit.read import load_runs

    keras.utils.set_random_seed(1)
    model = keras.Sequential([
        keras.Input((8, 8, 1)), layers.Conv2D(8, 3, activation="relu", name="conv2d"),
        layers.MaxPooling2D(name="max_pooling2d"), layers.Dropout(0.3, name="dropout"),
        layers.Flatten(name="flatten"), layers.Dense(3, activation="softmax", name="out")])
    kernel, bias = model.get_layer("conv2d").get_weights()
    bias[:3] = -100.0
    model.get_layer("conv2d").set_weights([kernel, bias])
    model.compile("sgd", "sparse_categorical_crossentropy")
    x = rng.uniform(0, 1, (64, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 3, 64)
    callback = RegAudit(probe=(x, y), strict=True, report=False)
    model.fit(x, y, epochs=1, batch_size=32, callbacks=[callback], verbose=0)
    table = download_tables(callback.run_id)["activations"]
    dead = table[(table.measure == "dead_frac") & (table.layer != "model")]
    assert set(dead.layer) == {"conv2d"}
    conv = keras.ops.convert_to_numpy(model.get_layer("conv2d")(x))
    expected = np.mean(np.all(np.abs(conv.reshape(-1, 8)) <= 1e-12, axis=0))
    assert expected == 3 / 8 and dead.value.iloc[-1] == pytest.approx(expected)
    runs = load_runs([callback.run_id])
    named = [f.numbers["layer"] for f in findings(runs, runs.group(None)) if f.id == "RA220"]
    assert named == ["conv2d"]
