"""How long `regaudit.lint` takes on large models once they are built, against one
`model.predict` of a single sample of the same model in the same run (ratios are what
means something on a shared machine; the absolute times are printed too):

    python benchmarks/lint.py                 # ResNet50, MobileNetV2, a text Transformer
    python benchmarks/lint.py --repeats 7

ResNet50 and MobileNetV2 (weights=None) are Functional models of built-in layers: lint
reads their graph's nodes, no trace. The Transformer (keras.io's TransformerBlock, a
custom layer holding Dropout) is traced once symbolically. Writes benchmarks/lint.json.
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "callbacks"))


def transformer():
    import user_models

    return user_models.build("text_transformer")[0]


def models():
    import keras

    return {
        "ResNet50": lambda: keras.applications.ResNet50(weights=None, input_shape=(224, 224, 3)),
        "MobileNetV2": lambda: keras.applications.MobileNetV2(weights=None, input_shape=(224, 224, 3)),
        "text Transformer": transformer,
    }


def measure(name, build, repeats):
    import keras
    import numpy as np

    import regaudit

    keras.backend.clear_session()
    model = build()
    shape = [1, *model.inputs[0].shape[1:]]
    dtype = model.inputs[0].dtype
    sample = np.zeros(shape, dtype="int32" if "int" in str(dtype) else "float32")
    model.predict(sample, verbose=0)  # the first predict compiles: not what we compare with
    lint_times, predict_times = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        found = regaudit.lint(model)
        lint_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        model.predict(sample, verbose=0)
        predict_times.append(time.perf_counter() - started)
    lint_s, predict_s = statistics.median(lint_times), statistics.median(predict_times)
    return {"model": name, "layers": len(model.layers), "findings": len(found),
            "lint_s": lint_s, "lint_first_s": lint_times[0], "predict_1_sample_s": predict_s,
            "ratio": lint_s / predict_s}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    results = [measure(name, build, args.repeats) for name, build in models().items()]
    print(f"{'model':18} {'layers':>6} {'findings':>8} {'lint s':>8} {'first s':>8} "
          f"{'predict(1) s':>12} {'lint/predict':>12}")
    for r in results:
        print(f"{r['model']:18} {r['layers']:6d} {r['findings']:8d} {r['lint_s']:8.3f} "
              f"{r['lint_first_s']:8.3f} {r['predict_1_sample_s']:12.3f} {r['ratio']:12.2f}")
    with open(os.path.join(os.path.dirname(__file__), "lint.json"), "w") as handle:
        json.dump({"machine": platform.platform(), "python": platform.python_version(),
                   "results": results}, handle, indent=2)


if __name__ == "__main__":
    main()
