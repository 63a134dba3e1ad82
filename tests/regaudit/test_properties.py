"""Property-based tests (hypothesis) of the measure functions: random shapes and values,
NaN and infinities, constants. No exception, results inside their valid ranges, and equal
to the numpy/scipy reference where one is defined."""

import warnings

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import stats

from regaudit.measures import activations as A
from regaudit.measures import ensemble as E
from regaudit.measures import shift as S

from summaries import merged

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

#: finite values of moderate size, with NaN/Inf mixed in and constant tensors
values = st.one_of(
    st.floats(-1e3, 1e3, width=32),
    st.sampled_from([0.0, 0.0, 1.0, -1.0, np.nan, np.inf, -np.inf]),
)
tensors = st.tuples(st.integers(1, 30), st.integers(1, 5)).flatmap(
    lambda shape: st.one_of(
        arrays(np.float32, shape, elements=values),
        st.floats(-5, 5, width=32).map(lambda c: np.full(shape, c, np.float32)),
    ))


@SETTINGS
@given(tensors, st.integers(1, 4))
def test_activation_measures_stay_in_range_and_match_numpy(x, pieces):
    s = merged(x, min(pieces, len(x)), bounds=(0.0, 1.0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning (division by zero, ...) either
        out = {name: f(s) for name, f in A.ACTIVATION_MEASURES.items()}
    flat = x.astype(np.float64).ravel()
    finite = flat[np.isfinite(flat)]
    for name in ("zero_frac", "nonfinite_frac", "dead_frac", "sat_frac"):
        # a fraction, or NaN where it is undefined (sat_frac without finite values)
        assert 0.0 <= out[name] <= 1.0 or (name == "sat_frac" and not np.isfinite(flat).any()), name
    assert abs(out["nonfinite_frac"] - (1 - finite.size / flat.size)) <= 1e-12
    assert abs(out["zero_frac"] - np.mean(flat == 0)) <= 1e-12
    if not finite.size:
        assert all(np.isnan(out[m]) for m in ("mean", "std", "p50"))
        return
    scale = max(1.0, np.abs(finite).max())
    assert abs(out["mean"] - finite.mean()) <= 1e-9 * scale
    assert abs(out["std"] - finite.std()) <= 1e-6 * scale
    assert out["std"] >= 0 and out["rms"] >= 0 and out["abs_mean"] >= 0
    assert out["min"] == finite.min() and out["max"] == finite.max()
    assert out["min"] <= out["p01"] <= out["p50"] <= out["p99"] <= out["max"]
    assert out["p50"] == np.quantile(finite, 0.5)
    if finite.std() > 1e-6 * scale:
        assert abs(out["skew"] - stats.skew(finite)) <= 1e-5 * max(1, abs(stats.skew(finite)))
    else:
        assert np.isnan(out["skew"]) or abs(out["skew"]) < np.inf


@SETTINGS
@given(tensors, tensors)
def test_shift_measures_stay_in_range_and_match_scipy(a, b):
    ra, rb = merged(a, 1), merged(b, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        w1 = S.w1_scaled(ra, rb)
        ks = S.ks_statistic(ra, rb)
        drift_mean = S.mean_shift(ra, rb) if a.shape[-1] == b.shape[-1] else None
    fa, fb = a[np.isfinite(a)].astype(np.float64), b[np.isfinite(b)].astype(np.float64)
    if fa.size and fb.size:
        assert 0.0 <= ks <= 1.0
        assert abs(ks - stats.ks_2samp(fa, fb).statistic) <= 1e-12
        if fa.std() > 1e-12:
            assert abs(w1 - stats.wasserstein_distance(fa, fb) / fa.std()) <= 1e-7 * max(1.0, w1)
        else:
            assert np.isnan(w1)
    else:
        assert np.isnan(ks) and np.isnan(w1)
    assert drift_mean is None or np.isnan(drift_mean) or drift_mean >= 0


members = st.tuples(st.integers(1, 8), st.integers(1, 25), st.integers(2, 5)).flatmap(
    lambda shape: st.tuples(
        arrays(np.float64, shape, elements=st.floats(0.0, 1.0)),
        arrays(np.int64, shape[1], elements=st.integers(0, shape[2] - 1)),
    ))


@SETTINGS
@given(members)
def test_ensemble_measures_stay_in_range(data):
    raw, labels = data
    p = (raw + 1e-3) / (raw + 1e-3).sum(-1, keepdims=True)  # rows of probabilities
    det = p.mean(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = E.classification_measures(p, det, labels)
    t = len(p)
    for name in ("det_acc", "mc_acc", "member_acc", "disagreement", "det_ece", "mc_ece"):
        assert 0.0 <= out[name] <= 1.0, name
    assert out["mutual_info"] >= -1e-12 and out["expected_entropy"] >= -1e-12
    assert out["pred_entropy"] >= out["expected_entropy"] - 1e-9
    assert out["det_mc_kl"] >= -1e-12
    # T / (1 + (T - 1) rho): at least 1 (rho <= 1); above T only for negatively correlated members
    assert np.isnan(out["n_eff"]) or out["n_eff"] >= 1.0 - 1e-9
    mc = p.mean(0)
    assert out["mc_acc"] == np.mean(mc.argmax(-1) == labels)
    for k in [k for k in (1, 2, 4, 8) if k <= t]:
        assert 0.0 <= out[f"acc_at_k:{k}"] <= 1.0
