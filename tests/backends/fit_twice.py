"""Fit the same model twice from the same seed, without and with `RegAudit()` (every
default on, a real MLflow SQLite store), and check that the final weights, BatchNorm
moving statistics, optimizer slots and seed-generator states are bit-identical, with the
backend's determinism switched on. Prints what the audited run logged.

    KERAS_BACKEND=jax python fit_twice.py STORE_DIR
"""

import os
import sys

import keras
import numpy as np

BACKEND = keras.backend.backend()
if BACKEND == "tensorflow":
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()
elif BACKEND == "torch":
    import torch

    torch.use_deterministic_algorithms(True)


class Block(keras.layers.Layer):
    """A custom layer with Dropout inside, as keras.io examples write them."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(units, activation="relu")
        self.drop = keras.layers.Dropout(0.2)

    def call(self, x, training=False):
        return self.drop(self.dense(x), training=training)


def model():
    inputs = keras.Input((12,))
    h = keras.layers.Dense(16, activation="relu")(inputs)
    h = keras.layers.Dropout(0.3)(h)
    h = keras.layers.BatchNormalization()(h)
    h = Block(16, name="block")(h)
    outputs = keras.layers.Dense(3)(h)
    net = keras.Model(inputs, outputs)
    net.compile(keras.optimizers.Adam(1e-2),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    return net


def state(net):
    arrays = [keras.ops.convert_to_numpy(v) for v in net.variables]
    arrays += [keras.ops.convert_to_numpy(v) for v in net.optimizer.variables]
    for layer in net._flatten_layers():
        arrays += [keras.ops.convert_to_numpy(g.state) for g in getattr(layer, "_seed_generators", ())]
    return arrays


def fit(callbacks):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(384, 12)).astype("float32")
    y = (x[:, 0] + x[:, 1] > 0).astype("int32") + (x[:, 2] > 1).astype("int32")
    net = model()
    net.fit(x, y, validation_split=0.25, epochs=3, batch_size=32, callbacks=callbacks, verbose=0)
    return state(net)


if __name__ == "__main__":
    import mlflow

    from regaudit.callbacks import RegAudit

    mlflow.set_tracking_uri(f"sqlite:///{os.path.join(sys.argv[1], 'mlflow.db')}")
    plain = fit([])
    audited = fit([RegAudit()])
    differ = [i for i, (a, b) in enumerate(zip(plain, audited)) if not np.array_equal(a, b)]
    assert len(plain) == len(audited) and not differ, f"{BACKEND}: arrays {differ} differ"
    run = mlflow.search_runs(search_all_experiments=True, output_format="list")[0]
    metrics = sorted(run.data.metrics)
    print("backend", BACKEND, "tensorflow imported", "tensorflow" in sys.modules)
    print("metrics", len(metrics), " ".join(metrics))
    print("artifacts", " ".join(a.path for a in mlflow.artifacts.list_artifacts(run_id=run.info.run_id)))
