"""Dropout ensembles on real Keras models: the sampling twin, the measured drop fraction,
the behaviour on real digits, odd outputs, and what reaches MLflow."""

import warnings

import keras
import numpy as np
import pytest
from keras import layers
from mlflow.tracking import MlflowClient
from scipy import stats

from regaudit import DropoutEnsemble, RegAudit, RegauditWarning
from regaudit.tracking.artifacts import download_tables

from model_zoo import data_for


def mlp(rate, outputs=3, activation="softmax", inputs=12):
    keras.utils.set_random_seed(4)
    x = keras.Input((inputs,))
    h = layers.Dense(48, activation="relu", name="hidden")(x)
    h = layers.Dropout(rate, name="drop")(h)
    return keras.Model(x, layers.Dense(outputs, activation=activation, name="out")(h))


def attached(model, x, y=None, **options):
    callback = DropoutEnsemble(probe=(x,) if y is None else (x, y), strict=True, **options)
    callback.set_model(model)
    callback.on_train_begin()
    callback.on_epoch_begin(0)  # the audit before the first step runs here, as in fit
    return callback


def test_with_rate_zero_every_sample_equals_the_deterministic_prediction(rng):
    model = mlp(0.0)
    x = rng.normal(size=(300, 12)).astype("float32")
    callback = attached(model, x, ensemble_probe_size=300)
    det, members, _, _ = callback.probe_pass.run_ensemble(8)
    assert members[0].shape == (8, 300, 3)
    for member in members[0]:
        np.testing.assert_array_equal(member, det[0])
    np.testing.assert_allclose(det[0], model.predict(x, verbose=0), rtol=1e-5, atol=1e-7)


def test_measured_drop_fraction_lies_in_the_binomial_interval(rng):
    rate = 0.3
    model = mlp(rate)
    x = rng.normal(size=(256, 12)).astype("float32")
    callback = attached(model, x, ensemble_probe_size=256, mc_samples=8)
    _, _, counts, _ = callback.probe_pass.run_ensemble(8, probe=callback.probe_pass.probe)
    zeroed, nonzero = counts[0]
    low, high = stats.binom.interval(0.999, int(nonzero), rate)
    assert nonzero > 10_000
    assert low <= zeroed <= high
    table = download_tables(callback.run_id)["ensemble"].set_index(["layer", "measure"])["value"]
    measured = table[("drop", "drop_frac_measured")]
    low_frac, high_frac = np.array(stats.binom.interval(0.999, int(nonzero * 128 / 256), rate)) / (nonzero * 128 / 256)
    assert low_frac <= measured <= high_frac


def test_members_differ_and_the_model_state_does_not_move(rng):
    model = mlp(0.5)
    x = rng.normal(size=(64, 12)).astype("float32")
    seed_state = model.get_layer("drop").seed_generator.state.numpy()
    callback = attached(model, x)
    _, members, _, _ = callback.probe_pass.run_ensemble(4)
    assert not np.array_equal(members[0][0], members[0][1])
    np.testing.assert_array_equal(model.get_layer("drop").seed_generator.state.numpy(), seed_state)


def test_on_real_digits_the_ensemble_approaches_the_weight_scaled_network():
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.data / 16.0).astype("float32")
    y = digits.target
    order = np.random.default_rng(0).permutation(len(x))
    train, val = order[:1400], order[1400:]
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((64,)),
        layers.Dense(64, activation="relu"),
        layers.Dropout(0.5, name="drop"),
        layers.Dense(64, activation="relu"),
        layers.Dropout(0.5, name="drop_1"),
        layers.Dense(10, activation="softmax"),
    ])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    callback = RegAudit(mc_samples=32, ensemble_probe_size=397, strict=True, report=True)
    model.fit(x[train], y[train], validation_data=(x[val], y[val]), epochs=8, batch_size=32,
              callbacks=[callback], verbose=0)
    callback.report_thread.join(timeout=120)  # the train-end report logs the plots
    table = download_tables(callback.run_id)["ensemble"]
    final = table[(table.epoch == 8) & (table.layer == "model")].set_index("measure")["value"]
    gaps = [abs(final[f"acc_at_k:{k}"] - final["det_acc"]) for k in (1, 2, 4, 8, 16, 32)]
    assert gaps[-1] < gaps[0]
    assert gaps[-1] <= 0.02  # the MC average of 32 subnetworks matches weight scaling
    assert final["member_acc"] < final["mc_acc"]
    assert final["det_acc"] > 0.85
    predicted = model.predict(x[val][:397], verbose=0).argmax(-1)
    assert final["det_acc"] == pytest.approx(np.mean(predicted == y[val][:397]), abs=1 / 397)
    assert 1.0 < final["n_eff"] < 32

    per_layer = table[table.measure.isin(["disagreement_only", "mutual_info_only"])]
    assert set(per_layer.layer) == {"drop", "drop_1"} and set(per_layer.epoch) == {8}
    client = MlflowClient()
    metrics = client.get_run(callback.run_id).data.metrics
    for key in ("regaudit/model/mc_acc", "regaudit/model/ens_gap", "regaudit/model/n_eff",
                "regaudit/drop/drop_frac_measured", "regaudit/drop_1/mutual_info_only"):
        assert key in metrics, key
    artifacts = [a.path for a in client.list_artifacts(callback.run_id, "regaudit/plots")]
    assert "regaudit/plots/acc_at_k.png" in artifacts
    report = [a.path for a in client.list_artifacts(callback.run_id, "regaudit/report")]
    assert report == ["regaudit/report/report.html"]


def test_without_labels_only_label_free_measures(rng):
    model = mlp(0.4)
    x = rng.normal(size=(64, 12)).astype("float32")
    attached_callback = attached(model, x)
    measures = set(download_tables(attached_callback.run_id)["ensemble"].query("layer == 'model'").measure)
    assert measures == {"det_mc_kl", "disagreement", "pred_entropy", "expected_entropy",
                        "mutual_info", "n_eff"}


def test_regression_outputs_get_predictive_variance(rng):
    model = mlp(0.4, outputs=2, activation=None)
    x = rng.normal(size=(64, 12)).astype("float32")
    callback = attached(model, x, rng.normal(size=(64, 2)))
    table = download_tables(callback.run_id)["ensemble"].query("layer == 'model'")
    assert set(table.measure) == {"pred_var", "det_mc_mse"}
    det, members, _, _ = callback.probe_pass.run_ensemble(callback.mc_samples)
    assert table.set_index("measure")["value"]["pred_var"] == pytest.approx(
        np.mean(members[0].astype(np.float64).var(axis=0)), rel=1e-6)


def test_several_outputs_are_measured_one_by_one(rng):
    keras.utils.set_random_seed(5)
    x_in = keras.Input((8,))
    h = layers.Dropout(0.3, name="drop")(layers.Dense(16, activation="relu")(x_in))
    model = keras.Model(x_in, [layers.Dense(4, activation="softmax", name="cls")(h),
                               layers.Dense(1, name="reg")(h)])
    x = rng.normal(size=(64, 8)).astype("float32")
    y = (rng.integers(0, 4, 64), rng.normal(size=(64, 1)))
    callback = attached(model, x, y)
    table = download_tables(callback.run_id)["ensemble"]
    assert "det_acc" in set(table[table.layer == "model:0"].measure)
    assert set(table[table.layer == "model:1"].measure) == {"pred_var", "det_mc_mse"}


def test_a_model_without_dropout_is_said_once_and_records_nothing(tiny_model, rng):
    model = tiny_model("batchnorm_cnn")
    x, y = data_for(model, 64, rng)
    callback = DropoutEnsemble(probe_size=32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x, y, epochs=2, callbacks=[callback], verbose=0)
    ours = [str(w.message) for w in caught if issubclass(w.category, RegauditWarning)]
    assert len(ours) == 1 and "no noise source" in ours[0] and "skipped" in ours[0]
    assert "ensemble" not in download_tables(callback.run_id)


def test_a_timeseries_transformer_keeps_its_static_axes_and_every_source_is_measured():
    """keras.io's time-series Transformer, input (batch, time, 1): the Dropout after
    attention feeds a LayerNormalization over the size-1 feature axis, which the noisy
    twin must keep static (it lost it once, and with it the whole ensemble)."""
    import user_models

    model, x, y = user_models.build("timeseries_transformer")
    callback = attached(model, x[:64], y[:64], mc_samples=8)
    sources = callback.probe_pass.noise_sources
    assert [s.kind for s in sources] == ["attention_dropout", "dropout", "dropout"] * 2 + ["dropout"]
    det, members, counts, _ = callback.probe_pass.run_ensemble(8)
    for source, (dropped, seen) in zip(sources, counts):
        assert seen > 0 and 0 < dropped / seen < 1, source
    assert not np.allclose(members[0][0], det[0]) and not np.allclose(members[0][0], members[0][1])
    table = download_tables(callback.run_id)["ensemble"]
    measured = set(table.layer)
    assert {s.name for s in sources} <= measured and "model" in measured
    spread = table[(table.layer == "model") & (table.measure == "disagreement")]["value"]
    assert len(spread) and (spread > 0).all()
