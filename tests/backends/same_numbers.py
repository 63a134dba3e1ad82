"""One model saved once, measured on whichever backend KERAS_BACKEND names.

    python same_numbers.py save DIR      # every model of MODELS as DIR/<name>.keras + probe
    python same_numbers.py measure DIR   # DIR/<name>.<backend>.npz: the audit's numbers

`measure` runs regaudit's own probe pass (activation summaries, BatchNormalization
inputs with and without the twin's noise) and its Monte-Carlo ensemble on the loaded
model and writes every number to OUT (.npz); the test compares the three backends' files.
"""

import importlib.util
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "callbacks"))

import keras  # noqa: E402

import user_models  # noqa: E402
from regaudit.callbacks.demo import seed_models  # noqa: E402

PROBE = 48


def _seed(factory, shape):
    def make(rng):
        model = factory(input_shape=shape, classes=4)
        x = rng.normal(size=(PROBE,) + shape).astype("float32")
        return model, x, rng.integers(0, 4, PROBE)

    return make


#: the seed article's three models (small inputs), and models as users write them
MODELS = {
    "dropout_mlp": _seed(seed_models.dropout_mlp, (24,)),
    "batchnorm_cnn": _seed(seed_models.batchnorm_cnn, (12, 12, 1)),
    "dropout_batchnorm_cnn": _seed(seed_models.dropout_batchnorm_cnn, (12, 12, 1)),
    "text_transformer": user_models.text_transformer,
    "subclassed": user_models.subclassed,
    "lstm_gru": user_models.lstm_gru,
}


def keras_hub_bert(rng):
    """keras-hub's BERT classifier from config (random weights, no download): embeddings,
    attention and feed-forward dropouts in two encoder layers, a logit head; dict inputs."""
    import keras_hub

    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=60, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32,
        max_sequence_length=16, dropout=0.1)
    model = keras_hub.models.BertTextClassifier(backbone=backbone, num_classes=2, preprocessor=None,
                                                dropout=0.2)
    tokens = rng.integers(1, 60, (PROBE, 16))
    lengths = rng.integers(6, 17, PROBE)
    x = {"token_ids": tokens, "segment_ids": np.zeros_like(tokens),
         "padding_mask": np.arange(16)[None] < lengths[:, None]}
    return model, x, rng.integers(0, 2, PROBE)


if importlib.util.find_spec("keras_hub") is not None:  # .ci/run installs it (--no-deps)
    MODELS["keras_hub_bert"] = keras_hub_bert

CUSTOM = {"TransformerBlock": user_models.TransformerBlock,
          "TokenAndPositionEmbedding": user_models.TokenAndPositionEmbedding,
          "SubclassedClassifier": user_models.SubclassedClassifier}


def save(directory):
    for name, factory in MODELS.items():
        keras.utils.set_random_seed(0)
        model, x, y = factory(np.random.default_rng(0))
        x, y = keras.tree.map_structure(lambda a: a[:PROBE], x), y[:PROBE]
        model(keras.tree.map_structure(lambda a: a[:2], x))  # built (a subclassed model on its first call)
        # moving statistics away from their initial values, so BN ratios are not all 1
        for layer in model._flatten_layers():
            if isinstance(layer, keras.layers.BatchNormalization):
                rng = np.random.default_rng(1)
                layer.moving_mean.assign(rng.normal(0, 0.3, layer.moving_mean.shape))
                layer.moving_variance.assign(rng.uniform(0.3, 2.0, layer.moving_variance.shape))
        model.save(os.path.join(directory, f"{name}.keras"))
        inputs = {f"x|{key}": value for key, value in x.items()} if isinstance(x, dict) else {"x": x}
        np.savez(os.path.join(directory, f"{name}.npz"), y=y, **inputs)


def measure(directory, name, out):
    from regaudit.callbacks.probe.probe_pass import ProbePass
    from regaudit.callbacks.probe.choice import ProbeData
    from regaudit.measures import shift

    if name.startswith("keras_hub"):
        import keras_hub  # noqa: F401 - registers its classes for loading
    model = keras.saving.load_model(os.path.join(directory, f"{name}.keras"), custom_objects=CUSTOM)
    data = np.load(os.path.join(directory, f"{name}.npz"))
    x = data["x"] if "x" in data else {key[2:]: data[key] for key in data if key.startswith("x|")}
    probe = ProbeData(inputs=x, targets=data["y"], source="user", indices=np.arange(PROBE))
    before = [np.array(keras.ops.convert_to_numpy(v)) for v in model.variables]
    probe_pass = ProbePass(model, probe, batch_size=32, seed=0)
    summaries, batchnorm, twin, _ = probe_pass.run(twin=True)
    det, members, counts, _ = probe_pass.run_ensemble(16)
    after = [np.array(keras.ops.convert_to_numpy(v)) for v in model.variables]
    values = {"unchanged": np.array(all(np.array_equal(a, b) for a, b in zip(before, after)))}
    for tap, s in summaries.items():
        for field in ("count", "finite", "mean", "m2", "m3", "m4", "abs_sum", "min", "max", "zeros"):
            values[f"tap|{tap}|{field}"] = np.array(getattr(s, field))
        values[f"tap|{tap}|unit_sum"] = np.asarray(s.unit_sum)
        values[f"tap|{tap}|unit_m2"] = np.asarray(s.unit_m2)
        values[f"tap|{tap}|reservoir"] = np.asarray(s.reservoir)
        if len(s.reservoir):
            values[f"tap|{tap}|quantiles"] = np.quantile(s.reservoir, [0.01, 0.25, 0.5, 0.75, 0.99])
    for layer, moments in batchnorm.items():
        bn = dict((l.name, l) for l in model._flatten_layers()).get(layer.split("/")[-1])
        values[f"bn|{layer}|var"] = moments.var
        values[f"bn|{layer}|bn_var_ratio"] = np.array(
            shift.bn_var_ratio(moments.var, keras.ops.convert_to_numpy(bn.moving_variance)))
        if twin is not None:
            values[f"bn|{layer}|bn_dropout_var_ratio"] = np.array(
                shift.bn_dropout_var_ratio(twin[layer].var, moments.var))
    for i, output in enumerate(det):
        values[f"det|{i}"] = output
    for i, output in enumerate(members):
        values[f"members|{i}"] = output
    values["counts"] = counts
    values["sources"] = np.array([f"{s.name}|{s.rate}" for s in probe_pass.noise_sources])
    np.savez(out, **values)


if __name__ == "__main__":
    if sys.argv[1] == "save":
        save(sys.argv[2])
    else:
        for model_name in MODELS:
            measure(sys.argv[2], model_name,
                    os.path.join(sys.argv[2], f"{model_name}.{keras.backend.backend()}.npz"))
