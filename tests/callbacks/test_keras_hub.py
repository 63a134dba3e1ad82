"""keras-hub models built from config with random weights (no download): every noise
source of a BERT classifier found and dropping at its rate, its logit head classified,
and `fit` bit-identical with and without the audit.

keras-hub's `tensorflow-text` dependency would replace `tensorflow-cpu` with the full
`tensorflow`, so .ci/run installs keras-hub with `--no-deps` (its light dependencies come
with the `test` extra); where it is missing these tests skip, saying so."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from scipy import stats

keras_hub = pytest.importorskip(
    "keras_hub", reason="keras-hub is not installed (pip install --no-deps keras-hub, as .ci/run does)")

from regaudit import RegAudit  # noqa: E402
from regaudit.tracking.artifacts import download_tables  # noqa: E402

BUILD = """
import keras, keras_hub, numpy as np

def bert(seed=0):
    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=60, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32,
        max_sequence_length=16, dropout=0.1)
    model = keras_hub.models.BertTextClassifier(backbone=backbone, num_classes=2, preprocessor=None,
                                                dropout=0.2)
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(seed)
    tokens = rng.integers(1, 60, (96, 16))
    x = {"token_ids": tokens, "segment_ids": np.zeros_like(tokens), "padding_mask": np.ones_like(tokens, bool)}
    return model, x, (tokens[:, 0] > 30).astype("int64")

def gpt2(seed=0):
    # a causal LM: per-token logits over the vocabulary, padding weighted 0
    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.GPT2Backbone(vocabulary_size=50, num_layers=1, num_heads=2, hidden_dim=16,
                                             intermediate_dim=32, max_sequence_length=12, dropout=0.1)
    model = keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(seed)
    lengths = rng.integers(4, 13, 128)
    padding = np.arange(12)[None] < lengths[:, None]
    tokens = np.where(padding, rng.integers(1, 50, (128, 12)), 0)
    weights = padding.astype("float32")
    weights[:, -1] = 0.0
    return model, {"token_ids": tokens, "padding_mask": padding}, np.roll(tokens, -1, axis=1), weights
"""
namespace = {}
exec(BUILD, namespace)  # noqa: S102 - the same builder runs in the subprocess below


def test_a_bert_classifier_has_all_eight_sources_measured():
    model, x, y = namespace["bert"]()
    callback = RegAudit(strict=True, probe_size=48, ensemble_probe_size=48)
    model.fit(x, y, epochs=1, batch_size=32, validation_split=0.25, callbacks=[callback], verbose=0)
    sources = callback.probe_pass.noise_sources
    kinds = [s.kind for s in sources]
    # per encoder layer: attention dropout, self-attention output dropout, feed-forward
    # dropout; the embeddings' dropout; the classifier's dropout
    assert len(sources) == 8, sources
    assert kinds.count("attention_dropout") == 2 and kinds.count("dropout") == 6
    det, members, counts, _ = callback.probe_pass.run_ensemble(8)
    for source, (zeroed, seen) in zip(sources, counts):
        low, high = stats.binom.interval(0.999, int(seen), source.rate)
        assert low <= zeroed <= high, (source, zeroed / seen)
    assert not np.allclose(members[0][0], det[0])
    final = download_tables(callback.run_id)["ensemble"]
    final = final[final.epoch == 1].set_index(["layer", "measure"])["value"]
    for measure in ("mc_acc", "disagreement", "mutual_info", "acc_at_k:8"):
        assert ("model", measure) in final.index
    measured = {tap.name for tap in callback.probe_pass.taps}
    assert any(name.startswith("bert_backbone/transformer_layer_1/") for name in measured), measured


def test_fit_on_a_bert_classifier_and_a_gpt2_causal_lm_is_bit_identical_with_the_audit(tmp_path):
    script = textwrap.dedent(f"""
        import os
        os.environ["MLFLOW_TRACKING_URI"] = "sqlite:///{tmp_path}/m.db"
        import numpy as np, tensorflow as tf
        tf.config.experimental.enable_op_determinism()
        from regaudit import RegAudit
    """) + BUILD + textwrap.dedent("""
        def train(callbacks, build):
            model, x, y, *weights = build(3)
            model.fit(x, y, sample_weight=weights[0] if weights else None, epochs=2, batch_size=32,
                      validation_split=0.25, callbacks=callbacks, verbose=0)
            return [np.array(v) for v in model.variables]

        for build in (bert, gpt2):
            plain, audited = train([], build), train([RegAudit()], build)
            print("SAME" if all(np.array_equal(a, b) for a, b in zip(plain, audited)) else "DIFFERENT")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600,
                            env=dict(os.environ, REGAUDIT_REPORT="0"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-2:] == ["SAME", "SAME"], result.stdout


def test_a_gpt2_causal_lm_is_read_as_per_token_logits_with_its_padding_left_out():
    from mlflow.tracking import MlflowClient

    model, x, y, weights = namespace["gpt2"]()
    callback = RegAudit(strict=True, probe_size=32, ensemble_probe_size=32)
    model.fit(x, y, sample_weight=weights, epochs=1, batch_size=32, validation_split=0.25,
              callbacks=[callback], verbose=0)
    assert MlflowClient().get_run(callback.run_id).data.tags["regaudit.heads"] == \
        "per-token logits (vocabulary 50)"
    probe = callback.probe_pass.probe
    kept = probe.weights > 0  # the validation part's sample weights: padding is 0
    logits = model.predict(probe.inputs, verbose=0)
    final = download_tables(callback.run_id)["ensemble"]
    final = final[final.epoch == 1].set_index(["layer", "measure"])["value"]
    assert final[("model", "probe_positions")] == kept.sum() < kept.size
    assert final[("model", "det_acc")] == pytest.approx(np.mean(logits.argmax(-1)[kept] == probe.targets[kept]))
    assert ("model", "det_only_correct") not in final.index
    assert len(callback.probe_pass.noise_sources) == 4
