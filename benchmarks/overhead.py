"""Overhead of `RegAudit()` on the seed article's third model: fit time with the callback
over fit time without it, in the same process, alternating, median over rounds. Variants:
activation statistics + covariate shift (one shared pass), `RegAudit()` (all three
families: + dropout ensembles), and `RegAudit(gradient_ics=True)` for that option's cost;
all with `report=False`: the train-end report renders after `fit` returns, in a thread,
and is timed on its own at the end.

    python benchmarks/overhead.py                # 60,000 MNIST-shaped samples, 2 epochs, 3 rounds
    python benchmarks/overhead.py --mnist mnist.npz --pairs 5

Without --mnist the samples are scikit-learn's bundled digits upsampled to 28x28 and
tiled with pixel noise to 60,000 (MNIST's size and shape; MNIST itself needs a download).
Prints a table and writes benchmarks/overhead.json. Not a test: machines are noisy, so
only ratios within one run mean anything. Two ratios are reported:

- paired: fit time with RegAudit / fit time without, per round (order alternating), median. On a
  shared virtual machine single epochs swing by 2x between runs, which this ratio feels.
- in-run: fit time / (fit time - time spent inside RegAudit's hooks), within each audited
  fit, median. Everything the callback does happens inside its hooks, so this is the
  same quantity measured where both parts see the same machine conditions.
- minima: fastest audited fit / fastest plain fit (noise only ever slows a run down).
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


HOOKS = ("on_train_begin", "on_epoch_begin", "on_epoch_end", "on_train_batch_begin", "on_train_end")


def with_hook_timer(callback):
    """Wrap the callback's hooks so the time spent inside them adds up in `hook_seconds`."""
    callback.hook_seconds = 0.0
    for name in HOOKS:
        hook = getattr(callback, name)

        def timed(*args, _hook=hook, **kwargs):
            started = time.perf_counter()
            try:
                return _hook(*args, **kwargs)
            finally:
                callback.hook_seconds += time.perf_counter() - started

        setattr(callback, name, timed)
    return callback


def timed_fit(x, y, epochs, callbacks, seed, build=None):
    """(fit seconds, seconds inside the callbacks' hooks) of one fit of `build()` (a
    compiled model; default the seed article's third model)."""
    import keras

    from regaudit.callbacks.demo.seed_models import dropout_batchnorm_cnn

    keras.utils.set_random_seed(seed)
    if build is None:
        model = dropout_batchnorm_cnn()
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    else:
        model = build()
    started = time.perf_counter()
    made = callbacks()
    model.fit(x, y, epochs=epochs, batch_size=32, validation_split=0.1, callbacks=made, verbose=0)
    elapsed = time.perf_counter() - started
    return elapsed, sum(getattr(c, "hook_seconds", 0.0) for c in made)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=60_000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--mnist", help="an mnist.npz (x_train, y_train) if you have one")
    parser.add_argument("--only", help="comma-separated variants to run besides plain "
                        "(ActivationStats, acts+shift, RegAudit(), +gradient_ics); default all")
    parser.add_argument("--output", default=os.path.join(os.path.dirname(__file__), "overhead.json"))
    args = parser.parse_args()

    store = tempfile.mkdtemp(prefix="regaudit-bench-")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{store}/mlflow.db"
    from regaudit import ActivationStats, RegAudit

    x, y = mnist_shaped(args.samples, args.mnist)
    from regaudit.callbacks.families.activations import ActivationFamily
    from regaudit.callbacks.audit.hooks import Audit
    from regaudit.callbacks.families.shift import ShiftFamily

    class ActivationsAndShift(Audit):
        family_types = (ActivationFamily, ShiftFamily)

    variants = {
        "plain": lambda: [],
        "ActivationStats": lambda: [with_hook_timer(ActivationStats(report=False))],
        "acts+shift": lambda: [with_hook_timer(ActivationsAndShift(report=False))],
        "RegAudit()": lambda: [with_hook_timer(RegAudit(report=False))],
        "+gradient_ics": lambda: [with_hook_timer(RegAudit(gradient_ics=True, report=False))],
    }
    if args.only:
        keep = {"plain", *args.only.split(",")}
        variants = {name: make for name, make in variants.items() if name in keep}
    timed_fit(x[:512], y[:512], 1, lambda: [RegAudit(report=False)], 0)  # warm up TF and MLflow
    times = {name: [] for name in variants}
    in_run = {name: [] for name in variants if name != "plain"}
    for pair in range(args.pairs):
        order = list(variants) if pair % 2 == 0 else list(variants)[::-1]
        for name in order:
            elapsed, hooks = timed_fit(x, y, args.epochs, variants[name], pair)
            times[name].append(elapsed)
            if name in in_run:
                in_run[name].append(elapsed / (elapsed - hooks))
            print(f"round {pair + 1}/{args.pairs} {name:>13}: {elapsed:7.1f} s"
                  + (f" ({hooks:.2f} s in RegAudit's hooks)" if hooks else ""), flush=True)
    plain = times["plain"]
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "samples": args.samples, "epochs": args.epochs, "rounds": args.pairs,
        "data": "mnist" if args.mnist else "digits upsampled to 28x28, tiled with noise",
        "seconds": times, "variants": {},
    }
    print(f"\n{'variant':>13} | median fit (s) | paired ratio | in-run ratio | ratio of minima")
    for name in variants:
        paired = [t / p for t, p in zip(times[name], plain)]
        figures = {
            "median_paired_ratio": statistics.median(paired),
            "median_in_run_ratio": statistics.median(in_run[name]) if name in in_run else 1.0,
            "ratio_of_minima": min(times[name]) / min(plain),
        }
        result["variants"][name] = {"paired_ratios": paired, "in_run_ratios": in_run.get(name, []), **figures}
        print(f"{name:>13} | {statistics.median(times[name]):14.1f} | "
              f"{figures['median_paired_ratio']:12.3f} | {figures['median_in_run_ratio']:12.3f} | "
              f"{figures['ratio_of_minima']:.3f}")
    print("target for RegAudit(): <= 1.05")
    # the train-end report renders after fit returns, in a background thread: its own time
    made = []
    timed_fit(x[:2048], y[:2048], args.epochs, lambda: made.append(RegAudit(report=True)) or made, 0)
    started = time.perf_counter()
    made[0].report_thread.join()
    result["report_seconds_after_fit"] = time.perf_counter() - started
    print(f"train-end report: {result['report_seconds_after_fit']:.1f} s in a background thread "
          "after fit returned")
    with open(args.output, "w", encoding="utf-8") as handle:
        json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
