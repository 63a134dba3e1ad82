"""regaudit on large models no one here wrote: `keras.applications` ResNet50 (about 175
layers), MobileNetV2 and DenseNet121, `weights=None`, a 64-sample probe. For each: a
short real `fit` (a few steps) with `RegAudit(probe=...)`, which audits before the first
step and at the epoch's end, and

- the time of one audit (the second: the first also traces the pass) as a ratio to one
  `model.predict` over the probe, and the first audit's time;
- the peak memory the audit adds (resident set size sampled every 5 ms during each audit,
  over its value when the audit began);
- the number of measured layers, of MLflow metric keys in the run (bounded by
  `max_metric_layers`) and of Parquet rows per audit.

    python benchmarks/scale.py                       # 224x224, the three models
    python benchmarks/scale.py --size 96 --models ResNet50

Prints a table and writes benchmarks/scale.json. Not a test (tests/scale runs it small).
"""

import argparse
import json
import os
import platform
import tempfile
import threading
import time

import numpy as np

MODELS = ("ResNet50", "MobileNetV2", "DenseNet121")


def rss_bytes():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakSampler:
    """Peak resident memory over a baseline while a block runs (a 5 ms sampling thread)."""

    def __enter__(self):
        self.base = self.peak = rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, rss_bytes())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())
        self.added = self.peak - self.base


def predict_seconds(model, inputs, batch_size, repeats=3):
    """Median time of `repeats` `model.predict` calls over `inputs`, after one warm-up call
    (which traces the predict function)."""
    model.predict(inputs, batch_size=batch_size, verbose=0)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        model.predict(inputs, batch_size=batch_size, verbose=0)
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def sample_audit_memory(callback):
    """Wrap the callback's audit so each audit's peak added memory (bytes) is appended to
    the returned list."""
    memory, audit = [], callback._audit

    def sampled_audit(*args, **kwargs):
        with PeakSampler() as sampler:
            audit(*args, **kwargs)
        memory.append(sampler.added)

    callback._audit = sampled_audit
    return memory


def audit_application(name, size=224, probe_size=64, steps=2, batch_size=4, seed=0, epochs=1):
    """One short audited fit of keras.applications.<name> (`epochs` epochs of `steps`
    steps: the audits it plans decide which taps' reductions are XLA-fused); returns its
    figures."""
    import keras
    import mlflow

    from regaudit import RegAudit

    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    model = getattr(keras.applications, name)(weights=None, input_shape=(size, size, 3), classes=10)
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
    x_probe = rng.normal(size=(probe_size, size, size, 3)).astype("float32")
    y_probe = rng.integers(0, 10, probe_size)
    x = rng.normal(size=(steps * batch_size, size, size, 3)).astype("float32")
    y = rng.integers(0, 10, len(x))

    predict = predict_seconds(model, x_probe, probe_size)
    callback = RegAudit(probe=(x_probe, y_probe), probe_batch_size=probe_size, report=False)
    memory = sample_audit_memory(callback)
    model.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0, callbacks=[callback])
    client = mlflow.tracking.MlflowClient()
    keys = client.get_run(callback.run_id).data.metrics
    from regaudit import load_run

    tables = load_run(callback.run_id, client)
    per_audit = {table: len(getattr(tables, table)) // max(1, len(callback.audits))
                 for table in ("activations", "shift", "ensemble", "histograms")}
    seconds = [a["seconds"] for a in callback.audits]
    return {
        "model": name, "input": size, "probe": probe_size,
        "layers": len(model.layers), "measured_layers": len(callback.probe_pass.taps),
        "predict_seconds": predict,
        "epochs": epochs, "fused_taps": len(callback.probe_pass.fused),
        "first_audit_seconds": seconds[0], "audit_seconds": seconds[-1],
        "audit_per_predict": seconds[-1] / predict,
        "peak_added_mb": max(memory) / 2**20,
        "metric_keys": len(keys),
        "per_layer_metric_layers": len(callback.run.metric_layers),
        "rows_per_audit": per_audit,
        "run_id": callback.run_id,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--probe", type=int, default=64)
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--epochs", type=int, default=1,
                        help="epochs of the fit (one audit each): a longer fit fuses more taps' reductions")
    parser.add_argument("--output", default=os.path.join(os.path.dirname(__file__), "scale.json"))
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    folder = tempfile.mkdtemp(prefix="regaudit-scale-")
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{folder}/mlflow.db")
    results = []
    for name in args.models:
        result = audit_application(name, args.size, args.probe, epochs=args.epochs)
        results.append(result)
        print(f"{name:12s} layers {result['layers']:4d} measured {result['measured_layers']:4d}  "
              f"predict {result['predict_seconds']:6.2f} s  audit {result['audit_seconds']:6.2f} s "
              f"({result['audit_per_predict']:.2f} predicts; first {result['first_audit_seconds']:.1f} s)  "
              f"peak +{result['peak_added_mb']:.0f} MB  metric keys {result['metric_keys']}  "
              f"fused {result['fused_taps']}", flush=True)
    with open(args.output, "w") as out:
        json.dump({"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                               "python": platform.python_version()},
                   "results": results}, out, indent=2)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
