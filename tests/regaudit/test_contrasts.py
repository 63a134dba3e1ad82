"""The study's linear model against closed forms and statsmodels: robust contrasts (each
cell's own variance, Satterthwaite's df; Welch's test for two cells), the within-seed
correlation, equivalence (TOST), Holm with Shaffer's constraints."""

import numpy as np
import pytest
from scipy import stats

from regaudit.answer import statistics as S
from regaudit.answer.contrasts import CellModel, Estimate, holm_family, tost


def cells_of(data):
    """{run: value}, {run: cell}, {run: seed} of {cell: [value per seed]}."""
    values, cells, seeds = {}, {}, {}
    for cell, column in data.items():
        for seed, value in enumerate(column):
            run = f"{cell}#{seed}"
            values[run], cells[run], seeds[run] = float(value), cell, seed
    return values, cells, seeds


def test_a_contrast_has_each_cells_own_variance_and_satterthwaites_df():
    rng = np.random.default_rng(0)
    data = {c: rng.normal(m, sd, n) for c, m, sd, n in
            (("a", 0, 0.1, 3), ("b", 1, 1.0, 4), ("c", 0.5, 3.0, 5), ("d", 2, 1.0, 3))}
    values, cells, _ = cells_of(data)
    model = CellModel(values, cells)
    weights = {"a": 0.5, "b": 0.5, "c": -1.0}
    found = model.contrast(weights)
    parts = [w ** 2 * data[c].var(ddof=1) / data[c].size for c, w in weights.items()]
    se = np.sqrt(sum(parts))
    df = sum(parts) ** 2 / sum(p ** 2 / (data[c].size - 1) for p, c in zip(parts, weights))
    estimate = sum(w * data[c].mean() for c, w in weights.items())
    half = stats.t.ppf(0.975, df) * se
    assert (found.estimate, found.se, found.df, found.p, found.low, found.high) == pytest.approx(
        (estimate, se, df, 2 * stats.t.sf(abs(estimate) / se, df), estimate - half, estimate + half))
    assert model.contrast({"a": 1, "zzz": -1}) is None  # a cell without runs
    # two cells: Welch's t-test
    welch = stats.ttest_ind(data["b"], data["c"], equal_var=False)
    assert model.contrast({"b": 1, "c": -1}).p == pytest.approx(welch.pvalue)


def test_the_within_seed_correlation_is_measured_from_the_seed_block():
    rng = np.random.default_rng(1)
    shared = rng.normal(0, 3.0, 6)  # the seed's noise, common to every variant
    data = {c: shared + m + rng.normal(0, 0.5, 6) for c, m in (("a", 0), ("b", 0.8), ("c", 0.2))}
    values, cells, seeds = cells_of(data)
    assert CellModel(values, cells, seeds).within_seed_correlation > 0.8
    values, cells, seeds = cells_of({c: rng.normal(0, 1, 6) for c in "abc"})
    assert abs(CellModel(values, cells, seeds).within_seed_correlation) < 0.5
    assert np.isnan(CellModel(values, cells).within_seed_correlation)
    # the closed form of a balanced two-way layout: (MS_seed - MS_res) / (MS_seed + (k - 1) MS_res)
    y = np.array([data[c] for c in "abc"])  # cells x seeds
    k, s = y.shape
    resid = y - y.mean(1, keepdims=True) - y.mean(0, keepdims=True) + y.mean()
    ms_seed = k * ((y.mean(0) - y.mean()) ** 2).sum() / (s - 1)
    ms_res = (resid ** 2).sum() / ((k - 1) * (s - 1))
    values, cells, seeds = cells_of(data)
    assert CellModel(values, cells, seeds).within_seed_correlation == pytest.approx(
        (ms_seed - ms_res) / (ms_seed + (k - 1) * ms_res))


def test_equivalence_is_the_two_one_sided_tests_of_statsmodels():
    from statsmodels.stats.weightstats import ttost_ind

    rng = np.random.default_rng(3)
    a, b = rng.normal(0.900, 0.003, 8), rng.normal(0.901, 0.003, 8)
    values, cells, _ = cells_of({"a": a, "b": b})
    found = CellModel(values, cells).contrast({"b": 1, "a": -1}, margin=0.01)
    reference = ttost_ind(b, a, -0.01, 0.01, usevar="unequal")[0]
    assert found.p_equal == pytest.approx(reference)
    assert np.isnan(tost(0.1, 0.01, 5, float("nan")))


def slow_shaffer(pvalues, contrast_of, alpha):
    """Reject step by step: the k-th smallest p against alpha over the number of contrasts
    that still have a hypothesis not rejected; stop at the first that fails."""
    order = np.argsort(pvalues)
    rejected = set()
    for step, index in enumerate(order):
        remaining = {contrast_of[i] for i in order[step:]}
        if pvalues[index] <= alpha / len(remaining):
            rejected.add(index)
        else:
            break
    return rejected


def test_holm_family_is_holm_without_margins_and_shaffer_with_them():
    from statsmodels.stats.multitest import multipletests

    rng = np.random.default_rng(4)
    # 12 draws: each multipletests call runs gc.collect (in a test worker's heap, most of
    # this test's 45 s at 50 draws)
    for _ in range(12):
        ps = rng.uniform(0, 0.05, 6) ** rng.uniform(0.5, 2)
        plain = [Estimate(0, 1, 5, p, 0, 0) for p in ps]
        holm_family(plain)
        assert [e.p_holm for e in plain] == pytest.approx(multipletests(ps, method="holm")[1])
        assert [e.p_holm for e in plain] == pytest.approx(S.holm(ps))
        equal = rng.uniform(0, 0.05, 6) ** rng.uniform(0.5, 2)
        both = [Estimate(0, 1, 5, p, 0, 0, 0.01, q) for p, q in zip(ps, equal)]
        family = holm_family(both)
        assert family == 6
        pvalues = list(ps) + list(equal)
        adjusted = [e.p_holm for e in both] + [e.p_equal_holm for e in both]
        contrast_of = list(range(6)) * 2
        for alpha in (0.01, 0.05):
            assert {i for i, p in enumerate(adjusted) if p <= alpha} == slow_shaffer(pvalues, contrast_of, alpha)


def test_detectable_is_the_normal_power_formula_in_t():
    found = Estimate(0.0, 0.01, 20, 1.0, 0, 0)
    expected = (stats.t.ppf(1 - 0.05 / 4 / 2, 20) + stats.t.ppf(0.8, 20)) * 0.01
    assert found.detectable(0.05, 4) == pytest.approx(expected)
