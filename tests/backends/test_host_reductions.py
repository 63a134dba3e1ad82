"""The reductions off TensorFlow, PyTorch's on the host (`host_reductions`) and JAX's
compiled ones (`jax_reductions`, under `jax.jit` as in JAX's pass), against the slow
numpy reference (`tests/regaudit/summaries.py`), finite and non-finite batches alike, and
regaudit's own draws (`draws`) against their pure-Python reference and their laws."""

import os
import sys

import keras
import numpy as np
import pytest
from scipy import stats

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "regaudit"))

from summaries import chunk_summary  # noqa: E402

from regaudit.callbacks.backends import draws  # noqa: E402

from regaudit.callbacks.backends import host_reductions
from regaudit.callbacks.probe.summaries import fast_path_held, to_summary  # noqa: E402

def _jax_reductions(exact):
    """`device_reductions` with each function compiled by `jax.jit`, as inside JAX's
    pass: the fast path, and where it does not hold (a non-finite value) the batch again
    on the exact path, as `ProbePass.run` does; or the exact path alone."""
    jax = pytest.importorskip("jax", reason="JAX is not installed (pip install 'regaudit[jax]')")
    from regaudit.callbacks.backends import jax_reductions as device_reductions

    class Compiled:
        @staticmethod
        def summaries(x, rows, bounds):
            def run(exact):
                out = jax.jit(lambda x, rows: device_reductions.summaries(x, rows, bounds, exact))(x, rows)
                return {key: np.asarray(value) for key, value in out.items()}

            out = run(exact)
            return out if fast_path_held(out) else run(True)

        @staticmethod
        def channel_moments(x, axis):
            return jax.jit(lambda x: device_reductions.channel_moments(x, axis))(x)

    return Compiled


#: where the reductions run, and how close to numpy's float64 they are: float64 sums of
#: float64 values; the fast path's float32 powers (TensorFlow's too) within 1e-6
REDUCTIONS = {"host": (lambda: host_reductions, 1e-9), "jax": (lambda: _jax_reductions(False), 1e-6),
              "jax-exact": (lambda: _jax_reductions(True), 1e-9)}

FIELDS = ("count", "finite", "mean", "m2", "m3", "m4", "abs_sum", "min", "max", "zeros")


def _arrays():
    rng = np.random.default_rng(0)
    yield "normal", (rng.normal(size=(64, 5)) * 3 + 1).astype("float32")
    yield "offset", (1000 + 0.01 * rng.normal(size=(40, 6, 7))).astype("float32")
    relu = np.maximum(rng.normal(size=(32, 4, 4, 3)), 0).astype("float32")
    yield "relu", relu
    holes = rng.normal(size=(50, 8)).astype("float32")
    holes[3, 2], holes[7, 0], holes[9, 5] = np.nan, np.inf, -np.inf
    yield "non-finite", holes
    yield "one unit", rng.normal(size=(100,)).astype("float32")


@pytest.mark.parametrize("where", list(REDUCTIONS))
@pytest.mark.parametrize("name,x", list(_arrays()), ids=[n for n, _ in _arrays()])
def test_summaries_match_the_numpy_reference(name, x, where):
    rows = np.arange(0, x.size, 7)
    reductions, tolerance = REDUCTIONS[where]
    values = reductions().summaries(x, rows, (0.0, 6.0))
    got = to_summary({key: np.asarray(value) for key, value in values.items()})
    # a tensor of one value per sample is one unit, as in the TensorFlow pass
    ref = chunk_summary(x if x.ndim > 1 else x[:, None], bounds=(0.0, 6.0))
    for field in FIELDS:
        # the third central sum cancels: its error is measured against n sd^3
        atol = tolerance * ref.finite * (ref.m2 / ref.finite) ** 1.5 if field == "m3" else 1e-9
        np.testing.assert_allclose(getattr(got, field), getattr(ref, field), rtol=tolerance, atol=atol,
                                   err_msg=field)
    for field in ("unit_finite", "unit_sum", "unit_maxabs", "unit_m2"):
        np.testing.assert_allclose(getattr(got, field), getattr(ref, field), rtol=tolerance, atol=1e-7,
                                   err_msg=field)
    np.testing.assert_array_equal(got.reservoir, x.reshape(-1)[rows])
    finite = x[np.isfinite(x)]
    assert got.saturated == np.sum((finite <= 0.01) | (finite >= 5.99))


@pytest.mark.parametrize("where", list(REDUCTIONS))
def test_channel_moments_match_numpy_on_any_axis(where):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(6, 3, 5, 4)).astype("float32")
    x[0, 1, 2, 3] = np.nan
    for axis in (-1, 1):
        got = {key: np.asarray(value) for key, value in REDUCTIONS[where][0]().channel_moments(x, axis).items()}
        channels = np.moveaxis(x.astype(np.float64), axis, -1).reshape(-1, x.shape[axis])
        for c in range(x.shape[axis]):
            values = channels[:, c][np.isfinite(channels[:, c])]
            assert got["count"][c] == values.size
            assert got["sum"][c] == pytest.approx(values.sum(), rel=1e-12)
            assert got["m2"][c] == pytest.approx(((values - values.mean()) ** 2).sum(), rel=1e-12)


def test_draws_are_their_reference_and_have_their_laws():
    key = draws.key_int(0, 128, 3, 2, 1)
    index = keras.ops.reshape(keras.ops.arange(20_000, dtype="int32"), (200, 100))
    uniform = keras.ops.convert_to_numpy(draws.uniform(index, key)).ravel()
    np.testing.assert_array_equal(uniform[:2000], draws.reference_uniform(2000, key))
    assert stats.kstest(uniform, "uniform").pvalue > 1e-3
    normal = keras.ops.convert_to_numpy(draws.normal(index, key)).ravel()
    assert stats.kstest(normal, "norm").pvalue > 1e-3
    # another key, another stream; a key made of tensors is the key made of ints
    other = keras.ops.convert_to_numpy(draws.uniform(index, draws.key_int(0, 128, 3, 2, 2))).ravel()
    assert abs(np.corrcoef(uniform, other)[0, 1]) < 0.05
    parts = [keras.ops.convert_to_tensor(v, "int32") for v in (0, 128, 3, 2, 1)]
    assert int(keras.ops.convert_to_numpy(draws.key_tensor(*parts))) & 0xFFFFFFFF == key
