"""A study's cost: the same trials (the demo's design on the article's CNN and digits, or
any design) run three ways in one process, each into its own MLflow experiment:

- by hand: one loop calling the trial function itself (`train_trial`: the variant built,
  `RegAudit()`, its own MLflow run), no Ray: the baseline;
- `regaudit.study(..., max_concurrent=1)`: the same trials on Ray Tune, one at a time;
  (study - by hand) / trials is Ray's overhead per trial (worker start, imports, Tune);
- `regaudit.study(..., max_concurrent=2)`: two at a time; against one at a time.

    python benchmarks/study.py                         # dropout-x-bn, 2 seeds, 2 epochs
    python benchmarks/study.py --design bn-placement --seeds 1 --epochs 1

Prints a table and writes benchmarks/study.json. Not a test: only ratios within one run
mean anything on a shared machine.
"""

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import uuid

MODEL = "regaudit.callbacks.demo:article_model"
DATA = "regaudit.callbacks.demo:load_digits_28"


def by_hand(trials, spec):
    from regaudit.callbacks.study.trial import train_trial

    started = time.perf_counter()
    for variant, levels, seed in trials:
        train_trial(spec, {"variant": variant, "levels": levels, "seed": seed})
    return time.perf_counter() - started


def on_ray(design, seeds, epochs, concurrent):
    import regaudit

    started = time.perf_counter()
    result = regaudit.study(MODEL, DATA, design=design, seeds=seeds, epochs=epochs, batch_size=16,
                            experiment=f"bench-ray-{concurrent}", max_concurrent=concurrent,
                            progress=False, output=os.path.join(tempfile.gettempdir(), "bench-study.html"))
    seconds = time.perf_counter() - started
    return seconds, len(result.run_ids)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--design", default="dropout-x-bn")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="regaudit-bench-study-")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{folder}/mlflow.db"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from regaudit.studies import design, tracking_uri

    trials = design.trials(args.design, args.seeds)
    spec = {"model": MODEL, "data": DATA, "tracking_uri": tracking_uri(), "study_id": uuid.uuid4().hex[:12],
            "experiment": "bench-by-hand", "epochs": args.epochs, "batch_size": 16, "sys_path": []}
    hand = by_hand(trials, spec)
    one, runs_one = on_ray(args.design, args.seeds, args.epochs, 1)
    two, runs_two = on_ray(args.design, args.seeds, args.epochs, 2)
    n = len(trials)
    out = {"design": args.design, "trials": n, "epochs": args.epochs, "by_hand_s": hand,
           "ray_1_s": one, "ray_2_s": two, "runs": [runs_one, runs_two],
           "ray_overhead_per_trial_s": (one - hand) / n, "ray_1_over_hand": one / hand,
           "ray_2_over_ray_1": two / one, "cpus": os.cpu_count(), "python": sys.version.split()[0],
           "machine": platform.machine()}
    print(f"{n} trials ({args.design}, {args.seeds} seeds, {args.epochs} epochs), {os.cpu_count()} CPUs")
    print(f"  by hand, one loop     {hand:7.1f} s")
    print(f"  Ray, 1 at a time      {one:7.1f} s   x{one / hand:.2f} of by hand; "
          f"{(one - hand) / n:+.1f} s per trial")
    print(f"  Ray, 2 at a time      {two:7.1f} s   x{two / one:.2f} of 1 at a time")
    with open(os.path.join(os.path.dirname(__file__), "study.json"), "w") as handle:
        json.dump(out, handle, indent=2)


if __name__ == "__main__":
    main()
