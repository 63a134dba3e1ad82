"""Cost of one dropout-ensemble sampling (T Monte-Carlo samples, batched through the
twin) as a ratio to T plain forward passes over the same probe samples, on the seed
article's third model. Two baselines: T `model.predict` calls, and T calls of the
model compiled once with `tf.function` (the cheapest plain forward pass there is).

    python benchmarks/ensemble_cost.py             # probe sizes 128 and 512, T = 16 and 64

Prints a table and writes benchmarks/ensemble_cost.json. Not a test.
"""

import json
import os
import platform
import statistics
import time

import numpy as np


def best_of(function, repeats=5):
    function()  # warm-up: tracing and first-call optimization are not the steady cost
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main():
    import keras
    import tensorflow as tf

    from regaudit.callbacks.probe.choice import ProbeData
    from regaudit.callbacks.probe.probe_pass import ProbePass
    from regaudit.callbacks.demo.seed_models import dropout_batchnorm_cnn

    keras.utils.set_random_seed(0)
    model = dropout_batchnorm_cnn()
    forward = tf.function(lambda x: model(x, training=False))
    rows = []
    for size in (128, 512):
        x = np.random.default_rng(0).random((size, 28, 28, 1)).astype("float32")
        probe = ProbeData(x, None, "user", np.arange(size))
        probe_pass = ProbePass(model, probe)
        for samples in (16, 64):
            ensemble = best_of(lambda: probe_pass.run_ensemble(samples))
            predict = best_of(lambda: [model.predict(x, batch_size=128, verbose=0) for _ in range(samples)])
            compiled = best_of(lambda: [forward(x).numpy() for _ in range(samples)])
            rows.append({"probe": size, "T": samples, "ensemble_s": ensemble,
                         "ratio_to_T_predict": ensemble / predict,
                         "ratio_to_T_compiled_forward": ensemble / compiled})
            print(f"probe {size:4d}, T {samples:3d}: ensemble {ensemble * 1000:7.1f} ms | "
                  f"/ T predicts {rows[-1]['ratio_to_T_predict']:.2f} | "
                  f"/ T compiled forwards {rows[-1]['ratio_to_T_compiled_forward']:.2f}", flush=True)
    result = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "rows": rows,
              "target": "ratio to T forward passes <= 1.0"}
    with open(os.path.join(os.path.dirname(__file__), "ensemble_cost.json"), "w") as handle:
        json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
