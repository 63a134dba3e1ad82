"""The probe pass's per-batch summaries: the float32 fast path against numpy float64 on
data built to break it, and the float64 fallback for batches it cannot take."""

import numpy as np
import pytest
import tensorflow as tf

from regaudit import RegAudit
from regaudit.tracking.artifacts import download_tables

from regaudit.callbacks.backends import tensorflow_reductions as reductions
from regaudit.callbacks.backends.tensorflow_reductions import _fast_moments, _fused_moments, _moments
from regaudit.callbacks.probe.summaries import central_moments
from model_zoo import reference_measures, tap_outputs


def numpy_moments(x):
    values = np.asarray(x, np.float64)
    flat = values.ravel()
    units = values.reshape(-1, values.shape[-1] if values.ndim > 1 else 1)
    dev = flat - flat.mean()
    unit_dev = units - units.mean(axis=0)
    return {
        "finite": flat.size, "center": flat.mean(), "m2": np.sum(dev**2),
        "m3": np.sum(dev**3), "m4": np.sum(dev**4), "abs_sum": np.abs(flat).sum(),
        "low": flat.min(), "high": flat.max(), "unit_sum": units.sum(axis=0),
        "unit_maxabs": np.abs(units).max(axis=0), "unit_m2": np.sum(unit_dev**2, axis=0),
    }


def scale_of(key, x):
    """What a summary's error is relative to: odd central moments can be ~0."""
    dev = np.asarray(x, np.float64).ravel() - np.mean(x, dtype=np.float64)
    if key == "m3":
        return np.sum(np.abs(dev) ** 3)
    if key == "center":
        return np.abs(x).max()
    if key == "unit_sum":
        units = np.asarray(x, np.float64).reshape(-1, x.shape[-1] if x.ndim > 1 else 1)
        return np.abs(units).sum(axis=0)
    return None


DATA = {
    "normal": lambda rng, s: rng.normal(1.0, 2.0, s),
    "offset": lambda rng, s: rng.normal(1000.0, 0.01, s),
    "relu": lambda rng, s: np.maximum(rng.normal(0.0, 1.0, s), 0.0),
    "heavy_tailed": lambda rng, s: rng.standard_t(3, s) * 5.0 + 3.0,
    "unit_scales": lambda rng, s: rng.normal(rng.normal(0, 50, s[-1]), rng.uniform(0.01, 3, s[-1]), s),
    "dead_units": lambda rng, s: np.where(np.arange(s[-1]) % 3 == 0, 0.0, rng.normal(0, 1, s)),
    # an untrained network in inference mode can blow up (or die out) layer by layer:
    # fourth powers of 1e20 overflow float32, of 1e-25 underflow it, without the scale
    "huge": lambda rng, s: rng.normal(2e20, 1e20, s),
    "tiny": lambda rng, s: rng.normal(1e-25, 3e-25, s),
    "all_zero": lambda rng, s: np.zeros(s),  # a dead layer: the scale's peak is 0
}


@pytest.mark.parametrize("shape,fused", [((64, 26, 26, 8), False), ((64, 30, 5), False),
                                         ((64, 300), False), ((64,), False),
                                         # the shapes whose reductions XLA may fuse
                                         ((64, 26, 26, 8), True), ((64, 30, 5), True)])
@pytest.mark.parametrize("kind", list(DATA))
def test_float32_fast_path_matches_numpy_float64(kind, shape, fused, rng):
    x = DATA[kind](rng, shape).astype(np.float32)
    function = _fused_moments if fused else tf.function(_fast_moments)
    raw = {key: value.numpy() for key, value in function(tf.constant(x)).items()}
    got = central_moments(raw)
    want = numpy_moments(x)
    for key, expected in want.items():
        scale = scale_of(key, x)
        if scale is None:
            np.testing.assert_allclose(got[key], expected, rtol=1e-6, atol=1e-12, err_msg=key)
        else:
            np.testing.assert_array_less(np.abs(got[key] - expected), 1e-6 * scale + 1e-12, err_msg=key)
    # a dead unit keeps an exact zero variance, not a cancelled one
    if kind == "dead_units" and len(shape) > 1:
        assert np.all(got["unit_m2"][::3] == 0.0)


def test_exact_path_leaves_out_non_finite_values(rng):
    x = rng.normal(size=(50, 6)).astype(np.float32)
    x[3, 2], x[9, 0] = np.nan, -np.inf
    got = {key: value.numpy() for key, value in tf.function(_moments)(tf.constant(x)).items()}
    finite = x.astype(np.float64)[np.isfinite(x)]
    assert got["finite"] == finite.size
    assert got["center"] == pytest.approx(finite.mean(), rel=1e-12)
    assert got["m2"] == pytest.approx(np.sum((finite - finite.mean()) ** 2), rel=1e-12)
    assert got["unit_finite"].tolist() == [49, 50, 49, 50, 50, 50]


@pytest.mark.parametrize("case", ["huge", "nan"])
def test_huge_values_stay_on_the_fast_path_and_non_finite_ones_take_the_float64_fallback(case, rng):
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((5,)),
        keras.layers.Dense(4, name="dense"),
        keras.layers.Dense(3, activation="tanh", name="out"),
    ])
    model.compile("adam", "mse")
    x = rng.normal(size=(40, 5)).astype("float32")
    probe = x.copy()
    if case == "huge":
        probe[:8] *= 1e30  # the first mini-batch of 8 only: its 4th powers overflow float32
    else:
        probe[3, 1] = np.nan  # a NaN in the first mini-batch
    callback = RegAudit(probe=(probe,), probe_batch_size=8, strict=True)
    model.fit(x, rng.normal(size=(40, 3)), epochs=1, callbacks=[callback], verbose=0)

    # the scaled fast path takes any finite magnitude; only NaN/Inf needs float64
    assert (callback.probe_pass._exact is not None) == (case == "nan")
    if case == "nan":
        return  # non-finite values: tests/regaudit/test_properties.py checks the measures
    tensors = tap_outputs(model, probe)
    assert np.abs(tensors["dense"]).max() > 1e29
    final = download_tables(callback.run_id)["activations"].query("epoch == 1")
    for tap in callback.probe_pass.taps:
        want = reference_measures(tensors[tap.name], callback.probe_pass.reservoir_index[tap.name], tap.bounds)
        got = final[final.layer == tap.name].set_index("measure")["value"]
        for measure in ("mean", "std", "skew", "kurtosis", "min", "max", "rms", "abs_mean"):
            assert got[measure] == pytest.approx(want[measure], rel=1e-6), (tap.name, measure)


def test_fusing_pays_only_where_its_compilation_is_repaid():
    from regaudit.callbacks.audit.schedule import Every, as_schedule, planned_audits

    assert planned_audits(Every(epochs=1), {"epochs": 30, "steps": 50}) == 31
    assert planned_audits(Every(epochs=5, at_start=False), {"epochs": 12}) == 2
    assert planned_audits(Every(steps=100), {"epochs": 3, "steps": 250}) == 8
    assert planned_audits(Every(steps=100), {"epochs": 3, "steps": None}) is None
    assert planned_audits(as_schedule(lambda epoch: True), {"epochs": 3}) is None
    # a 26x26x32 feature map on 1,024 probe rows: 3 audits do not repay a compilation,
    # 31 do; a 2-D tensor never fuses, an unknown plan neither
    assert not reductions.fuses((26, 26, 32), 1024, 3)
    assert reductions.fuses((26, 26, 32), 1024, 31)
    assert not reductions.fuses((100_000,), 1024, 1000)
    assert not reductions.fuses((26, 26, 32), 1024, None)


def test_a_fit_with_fused_reductions_measures_what_numpy_measures(rng, monkeypatch):
    """The probe pass with XLA-fused reductions (a fit long enough for them: here the
    threshold is lowered so a short fit fuses) against numpy on the layer outputs."""
    import keras

    monkeypatch.setattr(reductions, "FUSE_MIN_VALUES", 1e4)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((12, 12, 3)),
        keras.layers.Conv2D(8, 3, activation="relu", name="conv"),
        keras.layers.BatchNormalization(name="bn"),
        keras.layers.Dropout(0.3, name="drop"),
        keras.layers.Conv2D(4, 3, activation="tanh", name="conv_tanh"),
        keras.layers.GlobalAveragePooling2D(name="pool"),
        keras.layers.Dense(2, activation="softmax", name="out"),
    ])
    model.compile("adam", "sparse_categorical_crossentropy")
    x = rng.normal(size=(96, 12, 12, 3)).astype("float32")
    y = rng.integers(0, 2, 96)
    probe = rng.normal(3.0, 2.0, size=(40, 12, 12, 3)).astype("float32")
    callback = RegAudit(probe=(probe,), probe_batch_size=16, strict=True, report=False)
    model.fit(x, y, epochs=2, batch_size=32, callbacks=[callback], verbose=0)
    fused = callback.probe_pass.fused
    assert {"conv", "bn", "conv_tanh"} <= fused and "pool" not in fused and "out" not in fused
    tensors = tap_outputs(model, probe)
    final = download_tables(callback.run_id)["activations"].query("epoch == 2")
    for tap in callback.probe_pass.taps:
        want = reference_measures(tensors[tap.name], callback.probe_pass.reservoir_index[tap.name], tap.bounds)
        got = final[final.layer == tap.name].set_index("measure")["value"]
        for measure in ("mean", "std", "skew", "kurtosis", "min", "max", "rms", "abs_mean",
                        "zero_frac", "p50"):
            # skew and kurtosis are standardized: an absolute 1e-6 (a skew near 0 has no
            # relative precision in any float32 pass)
            tolerance = {"abs": 1e-6} if measure in ("skew", "kurtosis") else {"rel": 1e-6, "abs": 1e-9}
            assert got[measure] == pytest.approx(want[measure], **tolerance), (tap.name, measure)
