"""Overhead of `RegAudit()` on the seed article's third model: fit time with the callback
over fit time without it, in the same process, alternating, median over pairs.

    python benchmarks/overhead.py                # 60,000 MNIST-shaped samples, 2 epochs, 3 pairs
    python benchmarks/overhead.py --mnist mnist.npz --pairs 5

Without --mnist the samples are scikit-learn's bundled digits upsampled to 28x28 and
tiled with pixel noise to 60,000 (MNIST's size and shape; MNIST itself needs a download).
Prints a table and writes benchmarks/overhead.json. Not a test: machines are noisy, so
only the ratio within one run means anything.
"""

import argparse
import json
import os
import platform
import statistics
import tempfile
import time

import numpy as np


def mnist_shaped(samples, mnist_path=None, seed=0):
    if mnist_path:
        with np.load(mnist_path) as data:
            x, y = data["x_train"][:samples], data["y_train"][:samples]
        return (x[..., None] / 255.0).astype("float32"), y.astype("int64")
    from regaudit.callbacks.demo import load_digits_28

    (x, y), _ = load_digits_28(seed, validation_fraction=0.0)
    rng = np.random.default_rng(seed)
    index = rng.integers(0, len(x), samples)
    noisy = x[index] + rng.normal(0, 0.05, (samples,) + x.shape[1:]).astype("float32")
    return noisy.clip(0, 1).astype("float32"), y[index]


def timed_fit(x, y, epochs, callbacks, seed):
    import keras

    from regaudit.callbacks.seed_models import dropout_batchnorm_cnn

    keras.utils.set_random_seed(seed)
    model = dropout_batchnorm_cnn()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    started = time.perf_counter()
    model.fit(x, y, epochs=epochs, batch_size=32, validation_split=0.1,
              callbacks=callbacks(), verbose=0)
    return time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=60_000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--mnist", help="an mnist.npz (x_train, y_train) if you have one")
    parser.add_argument("--output", default=os.path.join(os.path.dirname(__file__), "overhead.json"))
    args = parser.parse_args()

    store = tempfile.mkdtemp(prefix="regaudit-bench-")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{store}/mlflow.db"
    from regaudit import RegAudit

    x, y = mnist_shaped(args.samples, args.mnist)
    variants = {"plain": lambda: [], "RegAudit()": lambda: [RegAudit()]}
    timed_fit(x[:512], y[:512], 1, variants["RegAudit()"], 0)  # warm up TF and MLflow
    times = {name: [] for name in variants}
    for pair in range(args.pairs):
        order = list(variants) if pair % 2 == 0 else list(variants)[::-1]
        for name in order:
            times[name].append(timed_fit(x, y, args.epochs, variants[name], pair))
            print(f"pair {pair + 1}/{args.pairs} {name:>11}: {times[name][-1]:7.1f} s", flush=True)
    ratios = [a / p for a, p in zip(times["RegAudit()"], times["plain"])]
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "samples": args.samples, "epochs": args.epochs, "pairs": args.pairs,
        "data": "mnist" if args.mnist else "digits upsampled to 28x28, tiled with noise",
        "seconds": times, "ratios": ratios, "median_ratio": statistics.median(ratios),
    }
    print(f"\n{'variant':>11} | median fit (s) | ratio to plain")
    for name in variants:
        med = statistics.median(times[name])
        print(f"{name:>11} | {med:14.1f} | {med / statistics.median(times['plain']):.3f}")
    print(f"median of paired ratios: {result['median_ratio']:.3f} (target <= 1.05)")
    with open(args.output, "w", encoding="utf-8") as handle:
        json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
