"""Speed where users feel it: short fits run as scripts, and a tracking server that is away.

Each fit runs in a fresh Python process, as a user's script does (imports, the first
trace, MLflow's store, the train-end report all count), in interleaved pairs (plain /
audited, the order alternating), and is timed from just before `fit` to the process's
end (a script waits for the train-end report at exit). Ratios are medians over pairs.

    python benchmarks/speed.py                       # every scenario, 3 pairs each
    python benchmarks/speed.py --pairs 5 --only short,digits
    python benchmarks/speed.py --tree /tmp/old       # an older checkout, for before/after

Scenarios:

- short: the seed article's third model, 20,000 MNIST-shaped samples, one epoch,
  `RegAudit()` with every default (its report waited for) against no callback;
- digits: an MLP on scikit-learn's digits (64 -> 64 ReLU -> Dropout 0.3 -> BN -> 10),
  5 epochs, `RegAudit()` with every default against no callback;
- outage: the digits fit with `RegAudit(report=False)` against a real `mlflow server` on
  127.0.0.1 (up) and against the same address with the server stopped (nothing listens:
  connections refused); says how many audits reached the spool (none may be lost).
- floor-short, floor-digits (not in the default run): the fit plain, in an MLflow run
  with its epoch logs logged, with `mlflow.keras.autolog()`, with autolog and
  `RegAudit()`, and with `RegAudit()` alone: what MLflow itself costs a short fit (importing
  it, its store, the run) beside what regaudit adds to an MLflow user's fit.

`--tree` runs the fits with the regaudit of another checkout (its `callbacks/` and
`reports/` are mapped to `regaudit.callbacks` / `regaudit.reports` as the install does).
Writes benchmarks/speed.json. Not a test: only ratios within one run mean anything.
"""

import argparse
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request

#: the start of a child script: `tree`'s regaudit in place of this checkout's
LOADER = textwrap.dedent('''
    import json, os, sys, time
    tree = {tree!r}
    if tree:  # another checkout's regaudit, laid out as the install lays it out
        sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f)]
        import importlib.util, types
        spec = importlib.util.spec_from_file_location(
            "regaudit", os.path.join(tree, "regaudit", "__init__.py"),
            submodule_search_locations=[os.path.join(tree, "regaudit")])
        module = importlib.util.module_from_spec(spec)
        sys.modules["regaudit"] = module
        spec.loader.exec_module(module)
        for name in ("callbacks", "reports"):
            sub = importlib.util.spec_from_file_location(
                "regaudit." + name, os.path.join(tree, name, "__init__.py"),
                submodule_search_locations=[os.path.join(tree, name)])
            loaded = importlib.util.module_from_spec(sub)
            sys.modules["regaudit." + name] = loaded
            sub.loader.exec_module(loaded)
''')

CHILD = LOADER + textwrap.dedent('''
    import numpy as np
    import keras
    scenario, audited, report, mlflow_use = {scenario!r}, {audited!r}, {report!r}, {mlflow_use!r}
    if scenario == "short":
        sys.path.insert(0, {here!r})
        from overhead import mnist_shaped
        from regaudit.callbacks.demo.seed_models import dropout_batchnorm_cnn
        x, y = mnist_shaped(20_000)
        keras.utils.set_random_seed(0)
        model = dropout_batchnorm_cnn()
        epochs, batch = 1, 32
    else:
        from sklearn.datasets import load_digits
        x, y = load_digits(return_X_y=True)
        x = (x / 16.0).astype("float32")
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(64, activation="relu"),
                                  keras.layers.Dropout(0.3), keras.layers.BatchNormalization(),
                                  keras.layers.Dense(10, activation="softmax")])
        epochs, batch = 5, 32
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    callbacks = []
    started = time.time()
    if mlflow_use:  # what an MLflow user's script does without regaudit
        import mlflow
        if mlflow_use == "autolog":
            mlflow.keras.autolog(log_models=False)
        else:
            mlflow.start_run()
    if audited:
        from regaudit import RegAudit
        callbacks = [RegAudit() if report else RegAudit(report=False)]
    history = model.fit(x, y, epochs=epochs, batch_size=batch, validation_split=0.1, verbose=0,
                        callbacks=callbacks)
    if mlflow_use == "run":  # Keras' epoch logs as run metrics, the run ended
        for key, values in history.history.items():
            for epoch, value in enumerate(values):
                mlflow.log_metric(key, value, step=epoch + 1)
        mlflow.end_run()
    out = {{"started": started, "fit": time.time() - started}}
    if audited:
        writer = callbacks[0].run.writer
        out.update(spooled=writer.spooled, lost=writer.lost, audits=len(callbacks[0].audits))
    print("RESULT " + json.dumps(out), flush=True)
''')


def run_fit(scenario, audited, report=True, env=None, tree=None, mlflow_use=None):
    """(seconds from just before `fit` to the process's end, the child's result dict).
    `mlflow_use`: "run" (the fit in `mlflow.start_run()`, its epoch logs logged after) or
    "autolog" (`mlflow.keras.autolog(log_models=False)`), in a fresh SQLite store."""
    code = CHILD.format(tree=tree, scenario=scenario, audited=audited, report=report,
                        mlflow_use=mlflow_use,
                        here=os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=dict(os.environ, **(env or {})))
    ended = time.time()
    lines = [l for l in done.stdout.splitlines() if l.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"the {scenario} fit failed:\n{done.stderr[-3000:]}")
    result = json.loads(lines[-1][len("RESULT "):])
    return ended - result["started"], result


def fresh_store(prefix):
    """A new folder holding this process's (and its children's) SQLite tracking store and
    spool; returns it."""
    folder = tempfile.mkdtemp(prefix=prefix)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{folder}/mlflow.db"
    os.environ["REGAUDIT_SPOOL_DIR"] = os.path.join(folder, "spool")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return folder


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(folder):
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{folder}/server.db",
         "--artifacts-destination", f"{folder}/artifacts", "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(uri + "/health", timeout=2):
                return process, uri
        except OSError:
            time.sleep(0.5)
    raise SystemExit("mlflow server did not start within 90 s")


def pairs(name, count, baseline, audited):
    """Interleaved (baseline, audited) fits: their times and the median ratio."""
    times = {"baseline": [], "audited": [], "results": []}
    for index in range(count):
        order = [("baseline", baseline), ("audited", audited)]
        for which, make in (order if index % 2 == 0 else order[::-1]):
            seconds, result = make()
            times[which].append(round(seconds, 2))
            if which == "audited":
                times["results"].append(result)
            print(f"{name} pair {index + 1}/{count} {which:>8}: {seconds:6.1f} s", flush=True)
    ratios = [a / b for a, b in zip(times["audited"], times["baseline"])]
    times["ratio_median"] = round(statistics.median(ratios), 3)
    times["ratios"] = [round(r, 3) for r in ratios]
    print(f"{name}: median ratio {times['ratio_median']:.3f} (pairs {min(ratios):.2f}-{max(ratios):.2f})",
          flush=True)
    return times


def rounds(name, count, makers):
    """Every variant once per round, the order reversed every other round: {variant:
    times, its median ratio to the first variant's (paired by round)}."""
    times = {variant: [] for variant in makers}
    for index in range(count):
        for variant in (list(makers) if index % 2 == 0 else list(makers)[::-1]):
            seconds, _ = makers[variant]()
            times[variant].append(round(seconds, 2))
            print(f"{name} round {index + 1}/{count} {variant:>18}: {seconds:6.1f} s", flush=True)
    first = list(makers)[0]
    out = {}
    for variant, seconds in times.items():
        ratios = [a / b for a, b in zip(seconds, times[first])]
        out[variant] = {"seconds": seconds, "ratio_median": round(statistics.median(ratios), 3),
                        "ratios": [round(r, 3) for r in ratios]}
        print(f"{name}: {variant:>18} median {statistics.median(seconds):6.1f} s, "
              f"{out[variant]['ratio_median']:.3f} of {first}", flush=True)
    return out


def floor(scenario, count, tree):
    """MLflow's own cost in a short fit, beside regaudit's: the plain fit, the fit in an
    MLflow run with its epoch logs logged (what any MLflow user pays), with autolog, with
    autolog and `RegAudit()`, and with `RegAudit()` alone (its report waited for)."""
    fit = lambda audited, use=None: (  # noqa: E731
        lambda: run_fit(scenario, audited, tree=tree, mlflow_use=use))
    return rounds(f"floor-{scenario}", count, {
        "plain": fit(False), "mlflow run": fit(False, "run"), "autolog": fit(False, "autolog"),
        "autolog + RegAudit": fit(True, "autolog"), "RegAudit": fit(True)})


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--only", default="short,digits,outage")
    parser.add_argument("--tree", help="a checkout whose regaudit the fits use")
    parser.add_argument("--output", default=os.path.join(os.path.dirname(__file__), "speed.json"))
    args = parser.parse_args()
    folder = fresh_store("regaudit-speed-")
    tree = os.path.abspath(args.tree) if args.tree else None
    results = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
               "tree": tree or "this checkout"}
    only = args.only.split(",")
    for scenario in ("short", "digits"):
        if scenario in only:
            results[scenario] = pairs(scenario, args.pairs, lambda s=scenario: run_fit(s, False, tree=tree),
                                      lambda s=scenario: run_fit(s, True, tree=tree))
    for scenario in ("short", "digits"):
        if f"floor-{scenario}" in only:
            results[f"floor-{scenario}"] = floor(scenario, args.pairs, tree)
    if "outage" in only:
        server, uri = start_server(folder)
        stopped = f"http://127.0.0.1:{free_port()}"
        try:
            results["outage"] = pairs(
                "outage", args.pairs,
                lambda: run_fit("digits", True, False, {"MLFLOW_TRACKING_URI": uri}, tree),
                lambda: run_fit("digits", True, False, {"MLFLOW_TRACKING_URI": stopped}, tree))
        finally:
            os.killpg(server.pid, signal.SIGTERM)
        lost = sum(r.get("lost", 0) for r in results["outage"]["results"])
        print(f"outage: {lost} writes lost; audits per fit "
              f"{[r.get('audits') for r in results['outage']['results']]}", flush=True)
    with open(args.output, "w", encoding="utf-8") as handle:
        json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
