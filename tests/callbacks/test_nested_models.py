"""Nested models called from custom code, per-position heads and layers random in
inference, on models written as keras.io and keras-hub write them (nested_models.py):
every layer measured by its path, numbers equal to a hand-written forward pass, heads
right, the model left exactly as it was."""

import json
import warnings

import keras
import numpy as np
import pytest
from scipy import stats

from regaudit import RegAudit, RegauditWarning
from regaudit.tracking.artifacts import download_tables

import nested_models
from model_zoo import reference_measures
from test_invariants import model_state, two_audits

D = r"dropout(_\d+)?"


def fitted(name, **options):
    model, x, y = nested_models.build(name)
    callback = RegAudit(strict=True, probe_size=64, ensemble_probe_size=64, **options)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x, y, epochs=1, batch_size=32, validation_split=0.25, callbacks=[callback], verbose=0)
    ours = [str(w.message) for w in caught if issubclass(w.category, RegauditWarning)]
    return model, callback, ours


def _final(callback, table):
    frame = download_tables(callback.run_id)[table]
    return frame[frame.epoch == frame.epoch.max()].set_index(["layer", "measure"])["value"]


def _model_json(callback):
    from mlflow.tracking import MlflowClient

    path = MlflowClient().download_artifacts(callback.run_id, "regaudit/model.json")
    with open(path, encoding="utf-8") as handle:
        return {row["name"]: row for row in json.load(handle)["layers"]}


def _check_measures(final, name, values, reservoir_rows, bounds=None):
    want = reference_measures(values, reservoir_rows, bounds)
    scale = max(want["std"], 1e-6)
    for measure in ("mean", "std", "min", "max", "abs_mean", "rms", "zero_frac"):
        atol = 1e-5 * scale if measure in ("mean", "min", "max") else 1e-7
        assert final[(name, measure)] == pytest.approx(want[measure], rel=1e-5, abs=atol), (name, measure)
    for measure in ("p01", "p50", "p99"):
        assert final[(name, measure)] == pytest.approx(want[measure], rel=1e-5, abs=1e-6), (name, measure)


def _drops_at_rate(probe_pass):
    det, members, counts, _ = probe_pass.run_ensemble(8)
    for source, (zeroed, seen) in zip(probe_pass.noise_sources, counts):
        low, high = stats.binom.interval(0.999, int(seen), source.rate)
        assert seen > 0 and low <= zeroed <= high, (source, zeroed / max(seen, 1))
    assert not np.allclose(members[0][0], det[0])
    return det


def test_the_mlp_mixer_block_is_measured_inside_its_nested_sequentials():
    model, callback, warned = fitted("mlp_mixer")
    assert not any("switched off" in w for w in warned), warned
    probe_pass = callback.probe_pass
    block = model.get_layer("mlp_mixer_layer")
    mlp1, mlp2 = block.mlp1, block.mlp2
    names = [tap.name for tap in probe_pass.taps]
    expected = [f"mlp_mixer_layer/{block.normalize.name}",
                *(f"mlp_mixer_layer/{mlp1.name}/{layer.name}" for layer in mlp1.layers),
                f"mlp_mixer_layer/{block.normalize.name}:1",
                *(f"mlp_mixer_layer/{mlp2.name}/{layer.name}" for layer in mlp2.layers),
                "mlp_mixer_layer"]
    assert [n for n in names if n.startswith("mlp_mixer_layer")] == expected
    assert [s.name for s in probe_pass.noise_sources][:2] == [expected[3], expected[7]]
    det = _drops_at_rate(probe_pass)
    predicted = model.predict(probe_pass.probe.inputs, verbose=0)
    np.testing.assert_allclose(det[0], predicted, rtol=1e-5, atol=1e-6)

    # mlp1's first Dense runs on the transposed normalized patches: by hand
    x = probe_pass.probe.inputs
    h = model.layers[1](x)
    transposed = keras.ops.transpose(block.normalize(h), axes=(0, 2, 1))
    hidden = keras.ops.convert_to_numpy(mlp1.layers[0](transposed))
    final = _final(callback, "activations")
    _check_measures(final, expected[1], hidden, probe_pass.reservoir_index[expected[1]])
    rows = _model_json(callback)
    assert rows[expected[1]]["audited"] and rows[expected[1]]["parent"] == f"mlp_mixer_layer/{mlp1.name}"


def test_a_vae_whose_call_runs_encoder_and_decoder_is_measured_and_its_sampling_is_stochastic():
    model, callback, warned = fitted("vae")
    assert not any("switched off" in w for w in warned), warned
    probe_pass = callback.probe_pass
    names = {tap.name for tap in probe_pass.taps}
    for nested in (model.encoder, model.decoder):
        for layer in nested.layers:
            if not isinstance(layer, keras.layers.InputLayer):
                assert f"{nested.name}/{layer.name}" in names, layer.name
    assert probe_pass.stochastic == ["encoder/sampling"]
    rows = _model_json(callback)
    assert rows["encoder/sampling"]["stochastic"] is True
    assert not any(row["stochastic"] for name, row in rows.items() if name != "encoder/sampling")
    _drops_at_rate(probe_pass)
    from regaudit.read import load_run
    from regaudit.reports.report import layer_tables

    ((_, _, table),) = layer_tables(load_run(callback.run_id))
    measured = dict(zip(table.name, table.measured))
    assert measured["encoder/sampling"] == "yes (random in inference: every prediction differs)"
    assert measured["decoder/reshape"] == "yes"
    # binary cross-entropy on pixel intensities: no class to be right about
    from mlflow.tracking import MlflowClient

    assert MlflowClient().get_run(callback.run_id).data.tags["regaudit.heads"] == "regression"
    assert ("model", "pred_var") in _final(callback, "ensemble").index
    # z_mean (upstream of the sampling) by hand
    x = probe_pass.probe.inputs
    upstream = keras.Model(model.encoder.inputs, model.encoder.get_layer("z_mean").output)
    z_mean = keras.ops.convert_to_numpy(upstream(x))
    _check_measures(_final(callback, "activations"), "encoder/z_mean", z_mean,
                    probe_pass.reservoir_index["encoder/z_mean"])


def test_a_siamese_tower_called_twice_is_measured_per_call():
    model, callback, _ = fitted("siamese")
    probe_pass = callback.probe_pass
    tower = model.get_layer("embedding_network")
    dense = tower.layers[-1]
    first, second = f"{tower.name}/{dense.name}", f"{tower.name}:1/{dense.name}"
    assert {first, second} <= {tap.name for tap in probe_pass.taps}
    (dropout,) = [layer for layer in tower.layers if isinstance(layer, keras.layers.Dropout)]
    assert [s.name for s in probe_pass.noise_sources] == [
        f"{tower.name}/{dropout.name}", f"{tower.name}:1/{dropout.name}"]
    _drops_at_rate(probe_pass)
    a, b = probe_pass.probe.inputs
    final = _final(callback, "activations")
    bounds = {tap.name: tap.bounds for tap in probe_pass.taps}
    for name, x in ((first, a), (second, b)):
        values = keras.ops.convert_to_numpy(tower(x, training=False))
        _check_measures(final, name, values, probe_pass.reservoir_index[name], bounds[name])


def test_per_token_logits_are_measured_over_the_positions_that_are_not_padding():
    from mlflow.tracking import MlflowClient

    model, callback, _ = fitted("token_classifier")
    tags = MlflowClient().get_run(callback.run_id).data.tags
    assert tags["regaudit.heads"] == f"per-token logits ({nested_models.TAGS} classes)"
    probe = callback.probe_pass.probe
    x, y = probe.inputs[:64], probe.targets[:64]
    logits = model.predict(x, verbose=0)
    real = x != 0  # mask_zero=True; the labels of padding are ignore_class=-1
    assert np.array_equal(real, y != -1)
    final = _final(callback, "ensemble")
    assert final[("model", "probe_positions")] == real.sum()
    assert final[("model", "det_acc")] == pytest.approx(np.mean(logits.argmax(-1)[real] == y[real]))
    assert ("model", "pred_var") not in final.index
    assert ("model", "det_only_correct") not in final.index  # positions are not independent
    # the ensemble's deterministic rows keep the mask through the tiled LSTM
    det = _drops_at_rate(callback.probe_pass)
    np.testing.assert_allclose(det[0], model.predict(probe.inputs, verbose=0), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", list(nested_models.FACTORIES))
def test_an_audit_leaves_every_variable_and_seed_state_as_it_was(name):
    model, x, y = nested_models.build(name)
    model.fit(x, y, epochs=1, batch_size=32, verbose=0)
    before = model_state(model)
    take = lambda a: a[:48]  # noqa: E731
    callback = two_audits(model, RegAudit(probe=(keras.tree.map_structure(take, x), take(y)), strict=True))
    assert len(callback.audits) == 2
    after = model_state(model)
    for key in before:
        np.testing.assert_array_equal(before[key], after[key], err_msg=key)


def test_outputs_not_measured_say_why_in_model_json_the_warning_and_the_report(tmp_path):
    """A lookup layer returns int64 whatever it declares: no rows, and said so; a
    position embedding has no batch axis."""
    from regaudit.read import load_run
    from regaudit.reports.report import build_report

    keras.utils.set_random_seed(0)
    inputs = keras.Input((5,), dtype="int64")
    ids = keras.layers.IntegerLookup(vocabulary=list(range(1, 9)), name="lookup")(inputs)
    x = keras.layers.Embedding(10, 4)(ids)
    positions = keras.layers.Embedding(5, 4, name="positions")(keras.ops.arange(5))
    x = keras.layers.Flatten()(x + positions)
    x = keras.layers.Dropout(0.2)(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x), name="lookup_model")
    model.compile("adam", "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    data = rng.integers(1, 9, (96, 5)).astype("int64")
    callback = RegAudit(strict=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(data, data[:, 0] % 3, epochs=1, batch_size=32, validation_split=0.25,
                  callbacks=[callback], verbose=0)
    said = [str(w.message) for w in caught if issubclass(w.category, RegauditWarning)
            and "not measured" in str(w.message)]
    assert len(said) == 1 and "lookup" in said[0] and "integer output" in said[0], said
    rows = _model_json(callback)
    assert rows["lookup"]["audited"] is False and rows["lookup"]["reason"] == "integer output"
    assert all(row["reason"] is None for row in rows.values() if row["audited"])
    assert "lookup" not in set(download_tables(callback.run_id)["activations"].layer)
    made = build_report(load_run(callback.run_id), str(tmp_path / "report.html"))
    text = open(made.path, encoding="utf-8").read()
    assert "integer output" in text
