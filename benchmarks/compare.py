"""regaudit against the instrumentation users know, on the seed article's third model and
60,000 MNIST-shaped samples for 2 epochs (as benchmarks/overhead.py), fits alternating
in one process, each variant's fit time as a median ratio to the plain fit over at least
5 rounds:

    (a) plain          no callback
    (b) RegAudit()     defaults (an audit before training and at each epoch's end)
    (c) every 100      RegAudit(schedule=Every(steps=100))
    (d) TensorBoard    keras.callbacks.TensorBoard(histogram_freq=1) (needs `tensorboard`)
    (e) naive          one Keras sub-model per layer, `predict` over the same 512-sample
                       probe at the same times as (b), and the same statistics in numpy/
                       scipy on the full activations (how activation-extraction tools work)

Then, from one instrumented fit on 6,000 samples (per-audit figures do not depend on the
dataset's size): one audit's time as a ratio to one `model.predict` over the probe
(`ActivationStats` and `RegAudit()`), the MLflow writing time per audit, and the peak
memory an audit adds (resident set size sampled every 5 ms). The ensemble sampling
against T forward passes is benchmarks/ensemble_cost.py.

Last, a small text Transformer (keras.io's TransformerBlock with
`MultiHeadAttention(dropout=0.2)` and two Dropout layers inside a custom layer, a logit
head; `--transformer-samples` generated token sequences of length 64): plain against
`RegAudit()`, alternating, and the same per-audit figures. Its Dropout layers all sit
inside custom layers, so this is the case the audit used to miss.

    pip install -e ".[cpu,bench]"         # tensorboard, for (d)
    python benchmarks/compare.py          # about 30-40 min on 2 cores
    python benchmarks/compare.py --rounds 5 --samples 60000 --only "RegAudit(),every 100"

Prints tables and writes benchmarks/compare.json. Not a test: only ratios within one run
mean anything on a shared machine.
"""

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from overhead import mnist_shaped, timed_fit, with_hook_timer  # noqa: E402
from scale import predict_seconds, sample_audit_memory  # noqa: E402


def seed_model():
    from regaudit.callbacks.demo.seed_models import dropout_batchnorm_cnn

    model = dropout_batchnorm_cnn()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def transformer_model(maxlen=64, vocab=2000, dim=32):
    """keras.io's text classification Transformer, small: token and position embedding,
    one TransformerBlock (MultiHeadAttention(dropout=0.2), Dropout inside), a logit head."""
    import keras
    from keras import layers, ops

    class TransformerBlock(layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.att = layers.MultiHeadAttention(num_heads=2, key_dim=dim, dropout=0.2)
            self.ffn = keras.Sequential([layers.Dense(dim, activation="relu"), layers.Dense(dim)])
            self.norm1, self.norm2 = layers.LayerNormalization(), layers.LayerNormalization()
            self.drop1, self.drop2 = layers.Dropout(0.1), layers.Dropout(0.1)

        def call(self, x, training=False):
            out1 = self.norm1(x + self.drop1(self.att(x, x), training=training))
            return self.norm2(out1 + self.drop2(self.ffn(out1), training=training))

    class Embed(layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.tokens, self.positions = layers.Embedding(vocab, dim), layers.Embedding(maxlen, dim)

        def call(self, x):
            return self.tokens(x) + self.positions(ops.arange(0, ops.shape(x)[-1]))

    inputs = keras.Input((maxlen,))
    h = layers.GlobalAveragePooling1D()(TransformerBlock()(Embed()(inputs)))
    h = layers.Dense(16, activation="relu")(layers.Dropout(0.1)(h))
    model = keras.Model(inputs, layers.Dense(2)(layers.Dropout(0.1)(h)), name="transformer")
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    return model


def token_data(samples, maxlen=64, vocab=2000, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, vocab, (samples, maxlen))
    return x, (x[:, :8].mean(axis=1) > vocab / 2).astype("int64")


def naive_callback(probe_size=512, seed=0):
    """The baseline (e): per layer a Keras sub-model `Model(inputs, layer.output)`,
    `predict` over the probe, then numpy/scipy statistics of the full activations:
    moments, p15/p50/p85, dead and saturated units, a 64-bin histogram, and drift
    (Wasserstein-1 and KS) against the previous audit, as regaudit records them."""
    import keras
    from scipy import stats

    class Naive(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            rng = np.random.default_rng(seed)
            from regaudit.callbacks.probe.choice import find_fit_data

            found = find_fit_data(self.model)
            x = found["validation_data"][0] if found and found.get("validation_data") else found["x"]
            self.probe = np.asarray(x)[rng.choice(len(x), min(probe_size, len(x)), replace=False)]
            self.extractors = [keras.Model(self.model.inputs, layer.output)
                               for layer in self.model.layers]
            self.previous = {}
            self.audit()

        def on_epoch_end(self, epoch, logs=None):
            self.audit()

        def audit(self):
            self.records = []
            for index, extractor in enumerate(self.extractors):
                values = extractor.predict(self.probe, batch_size=128, verbose=0)
                flat = values.astype(np.float64).ravel()
                units = values.reshape(-1, values.shape[-1])
                record = {
                    "mean": flat.mean(), "std": flat.std(), "skew": stats.skew(flat),
                    "kurtosis": stats.kurtosis(flat), "min": flat.min(), "max": flat.max(),
                    "p": np.percentile(flat, [15, 50, 85]),
                    "dead": float(np.mean(np.all(units <= 0, axis=0))),
                    "sat": float(np.mean(np.abs(flat) > 0.99)),
                    "hist": np.histogram(flat, bins=64)[0],
                }
                if index in self.previous:
                    record["w1"] = stats.wasserstein_distance(self.previous[index], flat)
                    record["ks"] = stats.ks_2samp(self.previous[index], flat).statistic
                self.previous[index] = flat
                self.records.append(record)

    return Naive()


def variants(log_dir):
    import keras

    from regaudit import Every, RegAudit

    return {
        "plain": lambda: [],
        "RegAudit()": lambda: [with_hook_timer(RegAudit(report=False))],
        "every 100": lambda: [with_hook_timer(RegAudit(schedule=Every(steps=100), report=False))],
        "TensorBoard": lambda: [with_hook_timer(
            keras.callbacks.TensorBoard(log_dir=tempfile.mkdtemp(dir=log_dir), histogram_freq=1))],
        "naive": lambda: [with_hook_timer(naive_callback())],
    }


def per_audit_figures(x, y, seed=0, build=None):
    """One instrumented fit per audit callback: audit time over one predict over the
    same probe (same batch size), MLflow writing time per audit, peak memory added.
    `build`: a compiled model's factory (default: the seed article's third model)."""
    import keras

    from regaudit import ActivationStats, RegAudit

    figures = {}
    for name, make in (("ActivationStats", ActivationStats), ("RegAudit()", RegAudit)):
        keras.utils.set_random_seed(seed)
        model = (build or seed_model)()
        callback = make(report=False)
        memory, writes = sample_audit_memory(callback), []
        write = callback._write

        def timed_write(*args, _write=write, **kwargs):
            started = time.perf_counter()
            _write(*args, **kwargs)
            writes.append(time.perf_counter() - started)

        callback._write = timed_write
        model.fit(x, y, epochs=3, batch_size=32, validation_split=0.1, verbose=0, callbacks=[callback])
        probe = callback.probe_pass.probe.inputs
        predict = predict_seconds(model, probe, callback.probe_batch_size, repeats=5)
        audits = [a["seconds"] for a in callback.audits]
        steady = statistics.median(audits[1:])  # the first audit also traces the pass
        figures[name] = {
            "probe": len(probe), "predict_seconds": predict,
            "first_audit_seconds": audits[0], "audit_seconds": steady,
            "audit_per_predict": steady / predict,
            "mlflow_write_seconds_per_audit": statistics.median(writes),
            "peak_added_mb": max(memory) / 2**20,
        }
    return figures


def alternate(made, x, y, epochs, rounds, build=None, label=""):
    """Fits of every variant, alternating in order each round: ({variant: [seconds]},
    {variant: [seconds in its hooks]})."""
    times = {name: [] for name in made}
    hooks = {name: [] for name in made}
    for round_ in range(rounds):
        order = list(made) if round_ % 2 == 0 else list(made)[::-1]
        for name in order:
            elapsed, in_hooks = timed_fit(x, y, epochs, made[name], round_, build)
            times[name].append(elapsed)
            hooks[name].append(in_hooks)
            print(f"{label}round {round_ + 1}/{rounds} {name:>12}: {elapsed:7.1f} s"
                  + (f" ({in_hooks:.2f} s in its hooks)" if in_hooks else ""), flush=True)
    return times, hooks


def ratios(made, times, hooks):
    """Per variant: paired, in-run and minima ratios against plain, hook seconds."""
    plain, out = times["plain"], {}
    print(f"\n{'variant':>12} | median fit (s) | paired ratio | in-run ratio | ratio of minima | s in hooks")
    for name in made:
        paired = [t / p for t, p in zip(times[name], plain)]
        in_run = [t / (t - h) for t, h in zip(times[name], hooks[name])]
        figures = {
            "median_paired_ratio": statistics.median(paired),
            "median_in_run_ratio": statistics.median(in_run),
            "in_run_range": [min(in_run), max(in_run)],
            "ratio_of_minima": min(times[name]) / min(plain),
            "median_hook_seconds": statistics.median(hooks[name]),
        }
        out[name] = {"paired_ratios": paired, "in_run_ratios": in_run, **figures}
        print(f"{name:>12} | {statistics.median(times[name]):14.1f} | {figures['median_paired_ratio']:12.3f} | "
              f"{figures['median_in_run_ratio']:12.3f} | {figures['ratio_of_minima']:15.3f} | "
              f"{figures['median_hook_seconds']:.2f}")
    return out


def print_per_audit(figures):
    print(f"\n{'callback':>16} | probe | predict (s) | audit (s) | audit / predict | first audit (s) "
          "| MLflow write per audit (s) | peak added (MB)")
    for name, f in figures.items():
        print(f"{name:>16} | {f['probe']:5d} | {f['predict_seconds']:11.3f} | {f['audit_seconds']:9.3f} | "
              f"{f['audit_per_predict']:15.2f} | {f['first_audit_seconds']:15.2f} | "
              f"{f['mlflow_write_seconds_per_audit']:26.3f} | {f['peak_added_mb']:.0f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=60_000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--mnist", help="an mnist.npz (x_train, y_train) if you have one")
    parser.add_argument("--only", help="comma-separated variants besides plain")
    parser.add_argument("--transformer-samples", type=int, default=20_000)
    parser.add_argument("--skip-seed-model", action="store_true", help="only the Transformer")
    parser.add_argument("--output", default=os.path.join(os.path.dirname(__file__), "compare.json"))
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    store = tempfile.mkdtemp(prefix="regaudit-bench-")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{store}/mlflow.db"
    from regaudit import RegAudit

    x, y = mnist_shaped(args.samples, args.mnist)
    made = variants(store)
    if args.only:
        keep = {"plain", *args.only.split(",")}
        made = {name: make for name, make in made.items() if name in keep}
    timed_fit(x[:512], y[:512], 1, lambda: [RegAudit(report=False)], 0)  # warm up TF and MLflow
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
                   f"{platform.platform()}",
        "samples": args.samples, "epochs": args.epochs, "rounds": args.rounds,
    }
    if not args.skip_seed_model:
        times, hooks = alternate(made, x, y, args.epochs, args.rounds)
        result.update({"seconds": times, "hook_seconds": hooks, "variants": ratios(made, times, hooks)})
        print("targets: RegAudit() <= 1.05; RegAudit() and every 100 below TensorBoard and far below naive")
        result["per_audit"] = per_audit_figures(x[:6000], y[:6000])
        print_per_audit(result["per_audit"])
        print("target: one activation audit <= 1.5 predicts over the probe")

    tx, ty = token_data(args.transformer_samples)
    pair = {name: made_ for name, made_ in variants(store).items() if name in ("plain", "RegAudit()")}
    times, hooks = alternate(pair, tx, ty, args.epochs, args.rounds, transformer_model, "transformer ")
    result["transformer"] = {"samples": args.transformer_samples, "seconds": times,
                             "variants": ratios(pair, times, hooks),
                             "per_audit": per_audit_figures(tx[:6000], ty[:6000], build=transformer_model)}
    print_per_audit(result["transformer"]["per_audit"])
    with open(args.output, "w", encoding="utf-8") as handle:
        json.dump(result, handle, indent=2)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
