"""One audited fit of a small model, run in its own process: single device, under
`MirroredStrategy` over two logical CPU devices, or as one worker of a
`MultiWorkerMirroredStrategy` cluster (TF_CONFIG). Prints `RUN <mode> <run_id|none>`.

usage: python dist_fit.py single|mirrored|worker INDEX PORT,PORT EXPERIMENT

The model trains the same way in every mode: full-batch SGD (one step per epoch over
all samples, so how the batch is split across replicas or workers does not matter) and
`BatchNormalization(synchronized=True)` (batch statistics over all replicas). Dropout
is left out because each replica draws its own training masks.
"""

import json
import os
import sys

mode = sys.argv[1]
if mode == "worker":
    index, ports, experiment = int(sys.argv[2]), sys.argv[3].split(","), sys.argv[4]
    os.environ["TF_CONFIG"] = json.dumps({
        "cluster": {"worker": [f"127.0.0.1:{port}" for port in ports]},
        "task": {"type": "worker", "index": index}})
else:
    experiment = sys.argv[2]

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

if mode == "mirrored":
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
elif mode == "worker":
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    from keras_multiworker_fix import apply  # Keras 3's own fit under MWMS; see there

    apply()
else:
    strategy = tf.distribute.get_strategy()

import keras  # noqa: E402
import mlflow  # noqa: E402

from regaudit import RegAudit  # noqa: E402

mlflow.set_experiment(experiment)
keras.utils.set_random_seed(7)
rng = np.random.default_rng(7)
x = rng.normal(size=(96, 6)).astype("float32")
y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype("int32") + (x[:, 2] > 1).astype("int32")
x_val = rng.normal(size=(48, 6)).astype("float32")
y_val = (x_val[:, 0] + 0.5 * x_val[:, 1] > 0).astype("int32") + (x_val[:, 2] > 1).astype("int32")

with strategy.scope():
    model = keras.Sequential([
        keras.Input((6,)),
        keras.layers.Dense(16, activation="relu", name="hidden"),
        keras.layers.BatchNormalization(synchronized=True, name="bn"),
        keras.layers.Dense(8, activation="tanh", name="squash"),
        keras.layers.Dense(3, activation="softmax", name="out"),
    ])
    model.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy", metrics=["accuracy"])

callback = RegAudit(report=False, strict=True, probe_size=48)
model.fit(x, y, validation_data=(x_val, y_val), epochs=3, batch_size=len(x), shuffle=False,
          callbacks=[callback], verbose=0)
print("RUN", mode, callback.run_id or "none", flush=True)
