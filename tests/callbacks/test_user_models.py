"""Every regularizer wherever it sits, on models written like the public Keras examples
(user_models.py): every layer call measured, every noise source's drop within its
interval, logit and binary heads classified, dict targets paired by name, inner
measures equal to a hand-written forward pass, and the model left exactly as it was."""

import re
import warnings

import keras
import numpy as np
import pytest
from scipy import stats

from regaudit import RegAudit, RegauditWarning
from regaudit.model.regularizers import DROP_FRAC, is_rnn
from regaudit.tracking.artifacts import download_tables

import nested_models
import user_models
from model_zoo import reference_measures
from test_invariants import model_state, two_audits

#: every noise source each model must show, in call order: (name pattern, kind); Keras
#: numbers its automatic names (`dropout_3`) process-wide, hence `D`
D = r"dropout(_\d+)?"
EXPECTED_SOURCES = {
    "text_transformer": [(rf"transformer_block/multi_head_attention/{D}", "attention_dropout"),
                         (rf"transformer_block/{D}", "dropout"), (rf"transformer_block/{D}", "dropout"),
                         ("head_dropout", "dropout")],
    "vit": [(rf"mha/{D}", "attention_dropout"), ("mlp_dropout", "dropout"),
            ("representation_dropout", "dropout")],
    "lstm_gru": [("lstm/dropout", "rnn_dropout"), ("lstm/recurrent_dropout", "rnn_recurrent_dropout"),
                 ("bigru/forward_gru/dropout", "rnn_dropout"),
                 ("bigru/forward_gru/recurrent_dropout", "rnn_recurrent_dropout"),
                 ("bigru/backward_gru/dropout", "rnn_dropout"),
                 ("bigru/backward_gru/recurrent_dropout", "rnn_recurrent_dropout")],
    "residual_cnn": [(rf"res_block/{D}", "dropout")],
    "subclassed": [(D, "dropout")],
    "multi_output_dict": [(D, "dropout")],
    "every_dropout_class": [("plain", "dropout"), ("spatial", "dropout"),
                            ("gaussian_dropout", "gaussian_dropout"), ("alpha", "alpha_dropout"),
                            ("gaussian_noise", "gaussian_noise"), ("scaled", "dropout")],
    "binary_logit": [(D, "dropout")],
    "timeseries_transformer": [(rf"multi_head_attention(_\d+)?/{D}", "attention_dropout"), (D, "dropout"),
                               (D, "dropout")] * 2 + [(D, "dropout")],
}


def fitted(name, **options):
    model, x, y = user_models.build(name)
    callback = RegAudit(strict=True, probe_size=64, ensemble_probe_size=64, **options)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(x, y, epochs=1, batch_size=32, validation_split=0.25,
                            callbacks=[callback], verbose=0)
    ours = [str(w.message) for w in caught if issubclass(w.category, RegauditWarning)]
    return model, callback, history, ours


def _interval(source, numerator, denominator, entries_per_value):
    """The 99.9% interval of the source's measured drop: binomial for a mask (over its
    mask entries), chi-square for Gaussian noise."""
    if source.drop_measure == DROP_FRAC:
        n = int(round(denominator / entries_per_value))
        low, high = stats.binom.interval(0.999, n, source.rate)
        return low / n, high / n
    n = int(denominator)
    low, high = stats.chi2.interval(0.999, n)
    return low * source.nominal / n, high * source.nominal / n


@pytest.mark.parametrize("name", list(user_models.FACTORIES))
def test_every_layer_call_is_measured_and_every_source_drops_at_its_rate(name):
    model, callback, history, warned = fitted(name)
    assert len(history.history["loss"]) == 1
    probe_pass = callback.probe_pass
    tapped = {id(tap.layer) for tap in probe_pass.all_taps}
    # an RNN layer is one call (its cell runs in a loop)
    not_called = {id(sub) for layer in model._flatten_layers() if is_rnn(layer)
                  for sub in layer._flatten_layers(include_self=False)}
    missing = [layer.name for layer in model._flatten_layers(include_self=False)
               if id(layer) not in tapped | not_called
               and not isinstance(layer, (keras.layers.InputLayer, keras.Model))]
    assert not missing, f"layers never measured: {missing}"
    measured = {tap.name for tap in probe_pass.taps}
    unmeasured = [n for names in probe_pass.unmeasured.values() for n in names]
    assert set(unmeasured).isdisjoint(measured)
    if unmeasured:  # said once, with the reason
        assert any("first axis is not the batch" in w for w in warned)
    if name == "text_transformer":  # the position embedding of arange(maxlen), whole
        assert list(probe_pass.unmeasured) == ["no batch axis"]
        (positions,) = probe_pass.unmeasured["no batch axis"]
        assert [t.shape for t in probe_pass.all_taps if t.name == positions] == [(user_models.MAXLEN, 16)]

    sources = probe_pass.noise_sources
    expected = EXPECTED_SOURCES[name]
    assert len(sources) == len(expected), sources
    for source, (pattern, kind) in zip(sources, expected):
        assert re.fullmatch(pattern, source.name) and source.kind == kind, (source, pattern)

    det, members, counts, _ = probe_pass.run_ensemble(8)
    per_entry = {"spatial": 6.0}
    for source, (numerator, denominator) in zip(sources, counts):
        low, high = _interval(source, numerator, denominator, per_entry.get(source.name, 1.0))
        assert denominator > 0, source
        assert low <= numerator / denominator <= high, (source, numerator / denominator)
    # the members differ from the deterministic prediction and from each other
    assert not np.allclose(members[0][0], det[0])
    assert not np.allclose(members[0][0], members[0][1])
    # the deterministic rows are the model's own inference-mode prediction
    predicted = keras.tree.flatten(model.predict(probe_pass.probe.inputs, verbose=0))
    np.testing.assert_allclose(det[0], np.asarray(predicted[0]), rtol=1e-5, atol=1e-6)

    table = download_tables(callback.run_id)["ensemble"]
    final = table[table.epoch == table.epoch.max()].set_index(["layer", "measure"])["value"]
    for source in sources:
        assert (source.name, source.drop_measure) in final.index


@pytest.mark.parametrize("name, head", [("text_transformer", "logits"), ("binary_logit", "binary_logits"),
                                        ("lstm_gru", "binary_probability"), ("vit", "probabilities")])
def test_classification_heads_get_the_classification_measures(name, head):
    from mlflow.tracking import MlflowClient

    model, callback, _, _ = fitted(name)
    table = download_tables(callback.run_id)["ensemble"]
    final = table[table.epoch == 1].set_index(["layer", "measure"])["value"]
    for measure in ("mc_acc", "disagreement", "mutual_info", "acc_at_k:8", "det_acc"):
        assert ("model", measure) in final.index, measure
    assert ("model", "pred_var") not in final.index
    assert MlflowClient().get_run(callback.run_id).data.tags["regaudit.heads"] == head
    # det_acc is the accuracy of the classes the head implies (the last audit ran on
    # the final weights)
    probe = callback.probe_pass.probe
    out = np.asarray(model.predict(probe.inputs[:64], verbose=0), np.float64)
    threshold = 0.0 if head == "binary_logits" else 0.5
    predicted = (out[:, 0] > threshold).astype(int) if out.shape[-1] == 1 else out.argmax(-1)
    expected = np.mean(predicted == np.asarray(probe.targets[:64]).astype(int))
    assert final[("model", "det_acc")] == pytest.approx(expected)


def test_the_report_says_which_head_was_assumed_and_what_each_regularizer_is(tmp_path):
    from regaudit.read import load_run
    from regaudit.reports.report import build_report

    _, callback, _, _ = fitted("lstm_gru")
    runs = load_run(callback.run_id)
    made = build_report(runs, str(tmp_path / "report.html"))
    text = open(made.path, encoding="utf-8").read()
    assert "outputs read as: binary_probability" in text
    layers = runs.layers.set_index("name")["regularizer"]
    assert layers["lstm"] == "rnn_dropout" and layers["bigru/forward_gru"] == "rnn_dropout"
    assert "rnn_dropout" in text


def test_dict_targets_are_paired_with_outputs_by_name():
    model, callback, _, _ = fitted("multi_output_dict")
    table = download_tables(callback.run_id)["ensemble"]
    final = table[table.epoch == 1].set_index(["layer", "measure"])["value"]
    outputs = model.output_names
    classifier = f"model:{outputs.index('z_class')}"
    regression = f"model:{outputs.index('a_score')}"
    probe = callback.probe_pass.probe
    predicted = model.predict(probe.inputs[:64], verbose=0)
    expected = np.mean(np.argmax(predicted["z_class"], -1) == probe.targets["z_class"][:64])
    assert final[(classifier, "det_acc")] == pytest.approx(expected)
    assert (regression, "pred_var") in final.index
    assert (regression, "det_acc") not in final.index


def test_inner_measures_equal_a_hand_written_forward_pass():
    """Every activation measure of three taps inside custom layers (one of them inside a
    Sequential inside a custom layer) against numpy/scipy on a forward pass written out
    by hand with the same sublayers; quantiles on the same reservoir positions."""
    model, callback, _, _ = fitted("text_transformer")
    x = callback.probe_pass.probe.inputs
    embedding = model.get_layer("embedding")
    block = model.get_layer("transformer_block")
    tokens = keras.ops.convert_to_numpy(embedding(x))
    attention = block.att(tokens, tokens, training=False)
    after_norm = keras.ops.convert_to_numpy(block.layernorm1(tokens + attention))
    hidden = keras.ops.convert_to_numpy(block.ffn.layers[0](after_norm))
    table = download_tables(callback.run_id)["activations"]
    final = table[table.epoch == 1].set_index(["layer", "measure"])["value"]
    taps = {tap.name: tap for tap in callback.probe_pass.taps}
    for name, values in ((f"transformer_block/{block.layernorm1.name}", after_norm),
                         (f"transformer_block/{block.ffn.name}/{block.ffn.layers[0].name}", hidden),
                         ("embedding", tokens)):
        want = reference_measures(values, callback.probe_pass.reservoir_index[name], taps[name].bounds)
        scale = max(want["std"], 1e-6)
        relu = name.endswith(block.ffn.layers[0].name)  # Dense(ff_dim, activation="relu")
        assert ((name, "dead_frac") in final.index) == relu
        for measure in ("mean", "std", "min", "max", "abs_mean", "rms", "skew", "kurtosis",
                        "zero_frac", "unit_mean_spread") + (("dead_frac",) if relu else ()):
            atol = 1e-5 * scale if measure in ("mean", "min", "max", "unit_mean_spread") else 1e-7
            assert final[(name, measure)] == pytest.approx(want[measure], rel=1e-5, abs=atol), (name, measure)
        for measure in ("p01", "p15", "p50", "p85", "p99"):  # the same reservoir positions; the
            # hand-written pass rounds differently from the compiled one in the last float32 bits
            assert final[(name, measure)] == pytest.approx(want[measure], rel=1e-6, abs=1e-7), (name, measure)


def test_batchnorm_inside_a_custom_block_gets_its_variance_shift():
    model, callback, _, _ = fitted("residual_cnn")
    x = callback.probe_pass.probe.inputs
    stem = model.layers[1]
    block = model.get_layer("res_block")
    h = block.conv1(stem(x))
    after = keras.ops.relu(block.bn1(h, training=False))
    bn2_input = keras.ops.convert_to_numpy(block.conv2(after)).astype(np.float64)
    table = download_tables(callback.run_id)["shift"]
    final = table[table.epoch == 1].set_index(["layer", "measure"])["value"]
    name = f"res_block/{block.bn2.name}"
    expected = np.mean(bn2_input.reshape(-1, 4).var(axis=0) / block.bn2.moving_variance.numpy())
    assert final[(name, "bn_var_ratio")] == pytest.approx(expected, rel=1e-5)
    # the Dropout before bn2 (through conv2) changes its input's variance in the twin
    assert final[(name, "bn_dropout_var_ratio")] > 1.0
    assert final[(f"res_block/{block.bn1.name}", "bn_dropout_var_ratio")] == pytest.approx(1.0)


@pytest.mark.parametrize("name", list(user_models.FACTORIES))
def test_an_audit_leaves_the_model_object_and_its_state_as_they_were(name):
    model, x, y = user_models.build(name)
    model.fit(x, y, epochs=1, batch_size=32, verbose=0)

    def attributes():
        return {layer.path if hasattr(layer, "path") else id(layer):
                {key: value for key, value in vars(layer).items()
                 if isinstance(value, (bool, int, float, str, type(None)))}
                | {"__keys__": tuple(sorted(vars(layer)))}
                for layer in model._flatten_layers()}

    before, state = attributes(), model_state(model)
    probe = (x[:48], keras.tree.map_structure(lambda a: a[:48], y))
    callback = two_audits(model, RegAudit(probe=probe, strict=True))
    assert len(callback.audits) == 2
    assert attributes() == before
    after = model_state(model)
    for key in state:
        np.testing.assert_array_equal(state[key], after[key], err_msg=key)


def test_a_model_trained_only_through_train_step_gets_one_plain_warning_and_its_history():
    model, x, _ = user_models.vae(np.random.default_rng(0))
    callback = RegAudit()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x, epochs=2, batch_size=32, callbacks=[callback], verbose=0)
    ours = [str(w.message) for w in caught if issubclass(w.category, RegauditWarning)]
    assert len(ours) == 1 and "defines no call()" in ours[0] and "\x1b" not in ours[0]
    tables = download_tables(callback.run_id)
    history = tables["history"]
    assert sorted(history[history.measure == "loss"].epoch) == [1, 2]
    from mlflow.tracking import MlflowClient

    tags = MlflowClient().get_run(callback.run_id).data.tags
    assert tags["regaudit.setup"] == "dropout" and tags["regaudit.dropout_rates"] == "0.2"


def test_fit_with_the_default_callback_is_bit_identical_on_every_user_model(tmp_path):
    """With fixed seeds and op determinism (a fresh process: op determinism is global),
    `fit` with `RegAudit()` (no probe=) ends with the same variables as without it, on
    every model above and in nested_models.py, and on a tf.data pipeline with random
    augmentation in its `map`, with validation data and without (where the probe must not
    come from it)."""
    import os
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(f"""
        import os, sys, warnings
        import numpy as np, keras, tensorflow as tf
        os.environ["MLFLOW_TRACKING_URI"] = "sqlite:///{tmp_path}/m.db"
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        tf.config.experimental.enable_op_determinism()
        from regaudit import RegAudit
        import nested_models, user_models

        def weights(model):
            return [np.array(v) for v in model.variables]

        def numpy_fit(name, callbacks, models=user_models):
            model, x, y = models.build(name, seed=5)
            model.fit(x, y, epochs=2, batch_size=32, validation_split=0.25, callbacks=callbacks, verbose=0)
            return weights(model)

        def augmented_fit(callbacks, validation):
            keras.utils.set_random_seed(5)
            model, x, y = user_models.residual_cnn(np.random.default_rng(5))
            data = user_models.augmented_dataset(x[:128], y[:128])
            model.fit(data, epochs=2, callbacks=callbacks, verbose=0,
                      validation_data=(x[128:], y[128:]) if validation else None)
            return weights(model)

        cases = {{name: (lambda cb, n=name: numpy_fit(n, cb)) for name in user_models.FACTORIES}}
        # nested models in custom code, per-token heads, the VAE's Sampling layer drawing
        # from its seed generator in training and in the audit
        cases.update({{name: (lambda cb, n=name: numpy_fit(n, cb, nested_models))
                      for name in nested_models.FACTORIES}})
        cases["augmented+validation"] = lambda cb: augmented_fit(cb, True)
        cases["augmented only"] = lambda cb: augmented_fit(cb, False)
        for name, fit in cases.items():
            plain = fit([])
            callback = RegAudit()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                audited = fit([callback])
            said = [str(w.message) for w in caught if "regaudit" in str(w.message)]
            same = len(plain) == len(audited) and all(np.array_equal(a, b) for a, b in zip(plain, audited))
            print(name, "SAME" if same else "DIFFERENT", len(callback.audits), "|".join(said))
    """)
    env = dict(os.environ, REGAUDIT_REPORT="0")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=900, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = {line.split(" ")[0] if not line.startswith("augmented") else " ".join(line.split(" ")[:2]): line
             for line in result.stdout.strip().splitlines()}
    assert len(lines) == len(user_models.FACTORIES) + len(nested_models.FACTORIES) + 2, result.stdout
    for name, line in lines.items():
        assert " SAME " in line, line
        if name == "augmented only":  # no probe without touching the pipeline: said, nothing audited
            assert " 0 " in line and "probe=(x, y)" in line, line
        else:
            assert " 3 " in line, line  # the audit before training and after each epoch
