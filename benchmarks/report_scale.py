"""`regaudit report --experiment` on many runs: the time from the command to the report
written (and logged back), for 10, 100 and 1,000 audited runs.

    python benchmarks/report_scale.py                 # 10, 100 and 1,000 runs
    python benchmarks/report_scale.py --runs 10 100
    python benchmarks/report_scale.py --runs 10 100 --tree /tmp/old   # before / after

One real audited fit (the seed article's third model, 2 epochs, with every family) is
trained once; its `regaudit/` artifacts, tags, params and metrics are copied into N runs
of a fresh SQLite store (synthetic runs: the same tables under other run ids, the final
accuracy jittered so the runs differ). Each N gets its own experiment; the command runs
in a subprocess as users run it, and the seconds are wall time, including the Python and
TensorFlow-free start of the CLI. Writes benchmarks/report_scale.json.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np


def audited_source(folder):
    """Train one audited run; return its id."""
    import keras
    import mlflow

    from regaudit import RegAudit
    from regaudit.callbacks.demo import load_digits_28
    from regaudit.callbacks.demo.seed_models import dropout_batchnorm_cnn

    (x, y), (xv, yv) = load_digits_28(0)
    keras.utils.set_random_seed(0)
    model = dropout_batchnorm_cnn()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    mlflow.set_experiment("source")
    audit = RegAudit(report=False)
    model.fit(x, y, validation_data=(xv, yv), epochs=2, batch_size=64, verbose=0, callbacks=[audit])
    return audit.run_id


def copy_runs(source, count, experiment, seed=0):
    """`count` runs in `experiment` holding the source run's artifacts, tags and params,
    with jittered final metrics."""
    import mlflow
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    run = client.get_run(source)
    experiment_id = mlflow.set_experiment(experiment).experiment_id
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as folder:
        local = client.download_artifacts(source, "regaudit", folder)
        tags = [RunTag(k, v) for k, v in run.data.tags.items() if not k.startswith("mlflow.")]
        params = [Param(k, v) for k, v in run.data.params.items()]
        for index in range(count):
            made = client.create_run(experiment_id, run_name=f"copy-{index}")
            now = int(time.time() * 1000)
            metrics = [Metric(k, float(v) * (1 + rng.normal(0, 0.01)), now, 2)
                       for k, v in run.data.metrics.items()]
            client.log_batch(made.info.run_id, metrics=metrics[:1000], params=params, tags=tags)
            client.log_artifacts(made.info.run_id, local, "regaudit")
            client.set_terminated(made.info.run_id)


def time_report(experiment, output, tree=None):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from speed import LOADER

    code = LOADER.format(tree=tree) + (
        "from regaudit.cli import main\n"
        f"sys.argv = ['regaudit', 'report', '--experiment', {experiment!r}, '-o', {output!r}]\n"
        "main()\n")
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(done.stderr[-2000:])
    return seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--tree", help="also time an older checkout's regaudit on the same runs")
    parser.add_argument("--output", default=os.path.join(os.path.dirname(__file__), "report_scale.json"))
    args = parser.parse_args()
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from speed import fresh_store

    folder = fresh_store("regaudit-report-scale-")
    os.chdir(folder)
    source = audited_source(folder)
    results = []
    for count in args.runs:
        started = time.perf_counter()
        copy_runs(source, count, f"runs-{count}")
        made = time.perf_counter() - started
        row = {"runs": count, "setup_seconds": round(made, 1)}
        if args.tree:
            row["before_seconds"] = round(time_report(
                f"runs-{count}", os.path.join(folder, f"before-{count}.html"), os.path.abspath(args.tree)), 1)
        row["report_seconds"] = round(time_report(f"runs-{count}", os.path.join(folder, f"report-{count}.html")), 1)
        results.append(row)
        print(f"{count:>5} runs: report {row['report_seconds']:7.1f} s"
              + (f" (before: {row['before_seconds']:.1f} s)" if args.tree else "")
              + f"   (copying the runs took {made:.0f} s)", flush=True)
    with open(args.output, "w", encoding="utf-8") as handle:
        json.dump({"machine": platform.platform(), "cpus": os.cpu_count(), "results": results}, handle, indent=2)


if __name__ == "__main__":
    main()
