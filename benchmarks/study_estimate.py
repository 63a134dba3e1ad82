"""The dry run's estimate against the study's real wall time, on the same machine in one
run: `regaudit study MODEL --data DATA --dry-run` (its estimate), then the same command
without `--dry-run` (its wall time, and the phases: checks, Ray with the trials, report).

    python benchmarks/study_estimate.py                  # the demo's study: dropout-x-bn,
                                                         # 3 seeds (one look), 6 epochs
    python benchmarks/study_estimate.py --seeds 1 --epochs 2

Prints estimate, real and their ratio, and writes benchmarks/study_estimate.json. The
fixed costs of `regaudit.studies.estimate` (Ray's start, the report) were measured with it.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
MODEL = "regaudit.callbacks.demo:article_model"
DATA = "regaudit.callbacks.demo:load_digits_28"


def regaudit(folder, *args):
    env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{folder}/mlflow.db")
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "regaudit", "study", MODEL, "--data", DATA, *args],
                          cwd=folder, env=env, capture_output=True, text=True, timeout=7200)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"regaudit study {' '.join(args)} exited {done.returncode}: {done.stderr[-2000:]}")
    return seconds, done.stdout


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--design", default="dropout-x-bn")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-concurrent", type=int, default=2)
    options = parser.parse_args()
    args = ["--design", options.design, "--seeds", str(options.seeds), "--max-seeds", str(options.seeds),
            "--epochs", str(options.epochs), "--batch-size", str(options.batch_size),
            "--max-concurrent", str(options.max_concurrent)]
    with tempfile.TemporaryDirectory() as folder:
        _, printed = regaudit(folder, *args, "--dry-run")
        estimate = float(re.search(r"estimated time: about (\d+) s", printed).group(1))
        real, _ = regaudit(folder, *args)
    line = re.search(r"estimated time: .*", printed).group(0)
    result = {"args": args, "estimate_s": estimate, "real_s": round(real, 1),
              "ratio_real_to_estimate": round(real / estimate, 3), "dry_run": line,
              "cpus": os.cpu_count()}
    print(json.dumps(result, indent=2))
    with open(os.path.join(HERE, "study_estimate.json"), "w", encoding="utf-8") as handle:
        json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
