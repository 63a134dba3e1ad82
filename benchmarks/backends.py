"""The audit against predict on each Keras 3 backend, in one run.

For each backend (a fresh process with `KERAS_BACKEND` set) and each model (the seed
article's third model, Dropout + BatchNormalization CNN on 28x28x1, and the keras.io text
Transformer with its custom block), on a probe of 512 samples:

- predict: `model.predict(probe, batch_size=128)`, after one warm-up call;
- audit: one audit's device side, the probe pass with the twin (`ProbePass.run(twin=True)`)
  and the Monte-Carlo ensemble with T = 8 (`run_ensemble(8)`), after the first audit
  (whose compilation is reported apart as `first_audit_s`);

each the median of 5. The ratio audit / predict is the figure that means something (the
machine is noisy); the seconds say where a backend stands. Writes benchmarks/backends.json.

    python benchmarks/backends.py [--backends tensorflow,jax,torch] [--repeats 5]
"""

import argparse
import json
import os
import subprocess
import sys
import textwrap

HERE = os.path.dirname(os.path.abspath(__file__))

CHILD = textwrap.dedent('''
    import json, statistics, sys, time
    import numpy as np, keras
    sys.path.insert(0, {tests!r})
    import user_models
    from regaudit.callbacks.demo import seed_models
    from regaudit.callbacks.probe.probe_pass import ProbePass
    from regaudit.callbacks.probe.choice import ProbeData

    def timed(function, repeats):
        seconds = []
        for _ in range(repeats):
            start = time.perf_counter()
            function()
            seconds.append(time.perf_counter() - start)
        return statistics.median(seconds)

    rng = np.random.default_rng(0)
    keras.utils.set_random_seed(0)
    models = {{
        "seed_cnn": (seed_models.dropout_batchnorm_cnn(),
                     rng.normal(size=(512, 28, 28, 1)).astype("float32")),
        "transformer": (user_models.text_transformer(rng)[0],
                        rng.integers(0, user_models.VOCAB, (512, user_models.MAXLEN))),
    }}
    out = {{}}
    for name, (model, x) in models.items():
        model.predict(x, batch_size=128, verbose=0)
        predict = timed(lambda: model.predict(x, batch_size=128, verbose=0), {repeats})
        start = time.perf_counter()
        probe_pass = ProbePass(model, ProbeData(x, None, "user", np.arange(len(x))), twin=True)
        probe_pass.run(twin=True)
        probe_pass.run_ensemble(8)
        first = time.perf_counter() - start
        audit = timed(lambda: (probe_pass.run(twin=True), probe_pass.run_ensemble(8)), {repeats})
        out[name] = {{"predict_s": predict, "audit_s": audit, "first_audit_s": first,
                      "audit_over_predict": audit / predict}}
    print("RESULT " + json.dumps(out))
''')


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="tensorflow,jax,torch")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    tests = os.path.join(HERE, "..", "tests", "callbacks")
    results = {}
    for backend in args.backends.split(","):
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
        done = subprocess.run([sys.executable, "-c", CHILD.format(tests=tests, repeats=args.repeats)],
                              env=env, capture_output=True, text=True)
        line = [l for l in done.stdout.splitlines() if l.startswith("RESULT ")]
        if done.returncode or not line:
            sys.exit(f"{backend}: exited {done.returncode}\n{done.stderr[-3000:]}")
        results[backend] = json.loads(line[0][len("RESULT "):])
        for model, row in results[backend].items():
            print(f"{backend:10s} {model:12s} predict {row['predict_s']:.3f} s  audit {row['audit_s']:.3f} s"
                  f"  audit/predict {row['audit_over_predict']:.1f}  first audit {row['first_audit_s']:.1f} s")
    with open(os.path.join(HERE, "backends.json"), "w") as handle:
        json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
