"""The same saved model (`.keras`) and the same probe give the same audit on TensorFlow,
JAX and PyTorch, before the first training step: the seed article's three models, the
text Transformer with its custom block, a subclassed model with BN and Dropout, and an
LSTM (and a bidirectional GRU) with recurrent dropout, and keras-hub's BERT classifier
where keras-hub is installed (`same_numbers.py`).

"Within 1e-5 relative" is taken relative to the magnitude of the values measured: the
backends' float32 kernels (oneDNN, XLA, ATen) round differently, by about 1e-7 of each
activation's size, so a quantity much smaller than the values it is made of (the mean of
a LayerNorm output, the variance of an almost constant unit) is compared against the
size of those values: mean, min, max, quantiles and reservoir values against
|value| + sd; the sum of |x| against n (|mean| + sd); sums of squares against the raw second moment n (mean^2 + var); third and
fourth central sums against n (|mean| + sd)^3 and ^4. Dropout masks are the same bits on
every backend (`regaudit.callbacks.backends.draws`), so the ensemble's drop counts are equal, and
each backend's drop fraction is within its binomial interval of the nominal rate.
"""

import json
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from backend_runs import BACKENDS, backend_env, run_script

from same_numbers import MODELS

TOLERANCE = 1e-5
WITH_BATCHNORM = {"batchnorm_cnn", "dropout_batchnorm_cnn", "subclassed"}


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    directory = tmp_path_factory.mktemp("same_numbers")
    run_script("tensorflow", "same_numbers.py", "save", str(directory))
    for backend in BACKENDS:
        run_script(backend, "same_numbers.py", "measure", str(directory))
    return directory


def _load(directory, model, backend):
    return dict(np.load(directory / f"{model}.{backend}.npz"))


def _scale(ref, key):
    """The magnitude a difference in `key` is measured against (module docstring)."""
    kind, tap, field = (key.split("|") + ["", ""])[:3]
    value = np.abs(ref[key].astype(float))
    if kind in ("det", "members"):
        return value + np.std(ref[key])
    if kind != "tap":
        return value
    n = float(ref[f"tap|{tap}|count"])
    mean = abs(float(ref[f"tap|{tap}|mean"]))
    sd = np.sqrt(max(float(ref[f"tap|{tap}|m2"]), 0.0) / max(n, 1.0))
    if field in ("mean", "min", "max", "reservoir", "quantiles"):
        return value + sd
    if field == "abs_sum":
        return n * (mean + sd)
    if field == "m2":
        return n * (mean**2 + sd**2)
    if field == "m3":
        return n * (mean + sd) ** 3
    if field == "m4":
        return n * (mean + sd) ** 4
    if field == "unit_m2":
        unit_n = n / max(value.size, 1)
        unit_mean = np.abs(ref[f"tap|{tap}|unit_sum"]) / unit_n
        return value + unit_n * unit_mean**2
    if field == "unit_sum":
        return value + n / max(value.size, 1) * sd
    return value


@pytest.mark.parametrize("backend", ["jax", "torch"])
@pytest.mark.parametrize("model", list(MODELS))
def test_same_numbers_as_tensorflow(measured, model, backend):
    ref = _load(measured, model, "tensorflow")
    other = _load(measured, model, backend)
    assert other["unchanged"] and ref["unchanged"], "the audit changed a variable of the model"
    assert list(other["sources"]) == list(ref["sources"])
    assert sorted(other) == sorted(ref), set(other) ^ set(ref)
    taps = {key.split("|")[1] for key in ref if key.startswith("tap|")}
    assert len(taps) >= 3
    assert any(key.startswith("bn|") for key in ref) == (model in WITH_BATCHNORM)
    failures = []
    for key in ref:
        if key in ("sources", "unchanged"):
            continue
        a, b = ref[key].astype(float), other[key].astype(float)
        assert a.shape == b.shape, (key, a.shape, b.shape)
        if key == "counts":  # the same masks: the same counts
            np.testing.assert_allclose(b, a, rtol=1e-12, err_msg=key)
            continue
        error = np.abs(a - b) / np.maximum(_scale(ref, key), 1e-30)
        if error.size and np.nanmax(error) > TOLERANCE:
            failures.append((key, float(np.nanmax(error))))
    assert not failures, f"{backend} differs from tensorflow on {model}: {failures[:8]}"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("model", [m for m in MODELS if m != "batchnorm_cnn"])
def test_drop_fractions_within_binomial_intervals(measured, model, backend):
    values = _load(measured, model, backend)
    rates = [float(source.rsplit("|", 1)[1]) for source in values["sources"]]
    assert rates, "the model has noise sources"
    for source, rate, (dropped, seen) in zip(values["sources"], rates, values["counts"]):
        assert seen > 0, source
        interval = stats.binomtest(int(round(dropped)), int(round(seen)), rate).proportion_ci(0.999)
        assert interval.low <= rate <= interval.high, (backend, source, dropped / seen, rate)


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_lint_reads_a_saved_model_the_same_as_on_tensorflow(measured, backend):
    """`regaudit lint model.keras` as a user runs it, on a machine without TensorFlow for
    JAX and PyTorch: the same findings, with the same layer paths, as on TensorFlow."""
    path = str(measured / "dropout_batchnorm_cnn.keras")
    printed = {}
    for name in ("tensorflow", backend):
        env = backend_env(name, block_tensorflow=name != "tensorflow")
        done = subprocess.run([sys.executable, "-m", "regaudit", "lint", path, "--json", "--fail-on", "never"],
                              env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        printed[name] = json.loads(done.stdout)
    ids = [finding["id"] for finding in printed["tensorflow"]["findings"]]
    assert "RA101" in ids and "RA102" in ids, ids  # Dropout feeds BN; BN after the activation
    assert printed[backend] == printed["tensorflow"]
