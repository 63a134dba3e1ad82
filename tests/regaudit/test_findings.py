"""Findings on constructed tables where the right answer is known."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from regaudit.answer import diagnoses as D
from regaudit.answer import ensemble_findings
from regaudit.answer import run_findings as F
from regaudit.answer import statistics as S
from regaudit.read import RunSet
from regaudit.schema import COLUMNS, HISTOGRAM_COLUMNS


def rows(run, epoch, layer, measure, value, layer_class="Dense"):
    return dict(zip(COLUMNS, (run, epoch, 0, "val", layer, layer_class, measure, value)))


def runset(history=(), activations=(), shift=(), ensemble=(), tags=None, names=None):
    runs = sorted({r["run"] for table in (history, activations, shift, ensemble) for r in table}
                  | set(tags or {}))
    frame = lambda items: pd.DataFrame(list(items), columns=list(COLUMNS))  # noqa: E731
    tag_rows = [(run, key, value) for run, own in (tags or {}).items() for key, value in own.items()]
    return RunSet(
        runs=pd.DataFrame({"run": runs, "name": [(names or {}).get(r, r) for r in runs],
                           "params": [{} for _ in runs], "final": [{} for _ in runs],
                           "experiment_id": "0", "model": "m", "params_count": 0}),
        activations=frame(activations), histograms=pd.DataFrame(columns=list(HISTOGRAM_COLUMNS)),
        shift=frame(shift), ensemble=frame(ensemble), history=frame(history),
        layers=pd.DataFrame(columns=["run", "name"]),
        tags=pd.DataFrame(tag_rows, columns=["run", "key", "value"]),
    )


def outcome_history(values):
    """{run: (final accuracy, final val_accuracy)} as two epochs of history."""
    out = []
    for run, (train, val) in values.items():
        out += [rows(run, 1, "model", "accuracy", 0.5), rows(run, 1, "model", "val_accuracy", 0.4),
                rows(run, 2, "model", "accuracy", train), rows(run, 2, "model", "val_accuracy", val)]
    return out


def test_generalization_gap_is_accuracy_minus_val_accuracy_with_holm_corrected_tests():
    runs = runset(history=outcome_history({"a1": (0.99, 0.90), "a2": (0.97, 0.90), "a3": (0.98, 0.90),
                                           "b1": (0.95, 0.93), "b2": (0.95, 0.94), "b3": (0.95, 0.935)}))
    groups = {r: ("none" if r[0] == "a" else "dropout") for r in ("a1", "a2", "a3", "b1", "b2", "b3")}
    summary, test = F.generalization_gap(runs, groups)
    assert summary.id == "RA203" and summary.numbers["measure"] == "gen_gap_acc"
    assert summary.numbers["groups"]["none"]["mean"] == pytest.approx(0.08)
    assert summary.numbers["groups"]["dropout"]["mean"] == pytest.approx(0.015)
    assert test.numbers["high"] == "none" and test.numbers["difference"] == pytest.approx(0.065)
    assert test.text.startswith("'none' has a higher gen_gap_acc than 'dropout' (overfits more)")
    assert test.level == "notice"


def test_outcome_statistics_match_scipy_welch_hedges_g_and_t_interval():
    a, b = [0.91, 0.93, 0.92], [0.95, 0.96, 0.97]
    values = {f"a{i}": (1.0, v) for i, v in enumerate(a)} | {f"b{i}": (1.0, v) for i, v in enumerate(b)}
    groups = {run: run[0] for run in values}
    summary, test = F.outcome_by_group(runset(history=outcome_history(values)), groups)
    mean, low, high = np.mean(a), *stats.t.interval(0.95, 2, loc=np.mean(a), scale=stats.sem(a))
    assert summary.id == "RA201"
    assert summary.numbers["groups"]["a"]["mean"] == pytest.approx(mean)
    assert summary.numbers["groups"]["a"]["low"] == pytest.approx(low)
    assert summary.numbers["groups"]["a"]["high"] == pytest.approx(high)
    welch = stats.ttest_ind(a, b, equal_var=False)
    assert test.numbers["p"] == pytest.approx(welch.pvalue) and test.numbers["family"] == 1
    pooled = np.sqrt((np.var(a, ddof=1) + np.var(b, ddof=1)) / 2)  # equal sizes
    assert test.numbers["g"] == pytest.approx((np.mean(b) - np.mean(a)) / pooled * (1 - 3 / 15))
    assert test.numbers["high"] == "b" and test.numbers["difference"] > 0
    assert test.text.startswith("'b' has a higher val_accuracy than 'a' (better): difference 0.04")
    assert test.level == "notice" and test.id == "RA202"


def test_groups_far_apart_give_one_significant_correctly_signed_finding_per_pair():
    rng = np.random.default_rng(1)
    centres = {"low": 0.80, "mid": 0.90, "high": 0.97}
    values = {f"{g}{i}": (1.0, c + 0.005 * rng.normal()) for g, c in centres.items() for i in range(4)}
    groups = {run: run.rstrip("0123456789") for run in values}
    _, *tests = F.outcome_by_group(runset(history=outcome_history(values)), groups)
    assert len(tests) == 3 and all(t.numbers["significant"] for t in tests)
    for t in tests:
        assert centres[t.numbers["high"]] > centres[t.numbers["low"]]
        assert t.numbers["family"] == 3 and t.numbers["p_holm"] >= t.numbers["p"]


def test_groups_from_one_distribution_rarely_claim_a_difference_and_say_what_they_could_detect():
    """Four groups of three seeds from one distribution: with Holm's correction at most
    5% of studies may claim any difference (family-wise); 100 simulated studies."""
    rng = np.random.default_rng(7)
    claimed = 0
    for study in range(100):
        draws = {g: list(0.9 + 0.01 * rng.normal(size=3)) for g in "abcd"}
        claimed += any(c.significant for c in S.compare_groups(draws))
        if study == 0:  # the same study through the finding a report prints
            values = {f"{g}{i}": (1.0, v) for g, vs in draws.items() for i, v in enumerate(vs)}
            groups = {run: run[0] for run in values}
            _, *tests = F.outcome_by_group(runset(history=outcome_history(values)), groups)
            quiet = [t for t in tests if not t.numbers["significant"]][0]
    assert claimed / 100 <= 0.08  # Holm keeps it under 0.05 in expectation
    assert quiet.text.startswith("No detectable difference in val_accuracy")
    assert "with 80% power" in quiet.text and "seeds per group" in quiet.text
    assert "better" not in quiet.text and quiet.level == "info"


def test_accuracy_intervals_stay_within_zero_and_one():
    values = {"a0": (1.0, 0.999), "a1": (1.0, 0.60), "b0": (1.0, 0.01), "b1": (1.0, 0.30)}
    summary, _ = F.outcome_by_group(runset(history=outcome_history(values)), {r: r[0] for r in values})
    for group in ("a", "b"):
        interval = summary.numbers["groups"][group]
        assert 0.0 <= interval["low"] <= interval["mean"] <= interval["high"] <= 1.0
    assert summary.numbers["groups"]["a"]["high"] == 1.0 and summary.numbers["groups"]["b"]["low"] == 0.0


def test_power_statement_matches_scipys_noncentral_t():
    sd, n = 0.01, 3
    for family in (1, 6):
        alpha = 0.05 / family
        d = S.detectable_difference(sd, n, n, alpha)
        df, critical = 2 * n - 2, stats.t.ppf(1 - alpha / 2, 2 * n - 2)
        nc = d / (sd * np.sqrt(2 / n))
        power = stats.nct.sf(critical, df, nc) + stats.nct.cdf(-critical, df, nc)
        assert power == pytest.approx(0.8, abs=1e-6)
    seeds = S.seeds_needed(0.01, sd)
    assert S.power(0.01, sd, seeds, seeds) >= 0.8 > S.power(0.01, sd, seeds - 1, seeds - 1)
    # the power itself, against a simulation of pooled t-tests
    rng = np.random.default_rng(3)
    a = rng.normal(0.0, sd, size=(20000, n))
    b = rng.normal(0.012, sd, size=(20000, n))
    simulated = np.mean(stats.ttest_ind(a, b, axis=1).pvalue < 0.05)
    assert S.power(0.012, sd, n, n) == pytest.approx(simulated, abs=0.015)


def test_holm_against_a_slow_reference():
    rng = np.random.default_rng(5)
    for _ in range(50):
        p = rng.random(rng.integers(1, 8)) ** 2
        order = np.argsort(p)
        m = len(p)
        expected = np.empty(m)
        for rank, index in enumerate(order):
            expected[index] = min(1.0, max((m - j) * p[order[j]] for j in range(rank + 1)))
        np.testing.assert_allclose(S.holm(p), expected)


def test_mcnemar_exact_matches_binomtest():
    for only_first, only_second in ((0, 0), (3, 0), (2, 9), (10, 10), (1, 30)):
        expected = 1.0 if only_first + only_second == 0 else \
            stats.binomtest(only_first, only_first + only_second, 0.5).pvalue
        assert S.mcnemar_exact(only_first, only_second) == pytest.approx(expected)


def test_one_run_per_group_says_no_test_is_possible():
    runs = runset(history=outcome_history({"a": (0.99, 0.9), "b": (0.99, 0.95)}))
    found = F.outcome_by_group(runs, {"a": "none", "b": "dropout"})
    assert len(found) == 2 and "can be tested" in found[1].text
    assert "n = 1" in found[0].text and "interval" not in found[0].text


def test_dead_and_saturated_units_are_flagged_above_their_thresholds_at_the_last_audit():
    acts = [rows("r", 1, "d1", "dead_frac", 0.5),   # only the last audit counts
            rows("r", 2, "d1", "dead_frac", 0.05), rows("r", 2, "d2", "dead_frac", 0.25),
            rows("r", 2, "t", "sat_frac", 0.21), rows("r", 2, "t2", "sat_frac", 0.2)]
    found = D.dead_and_saturated(runset(activations=acts, names={"r": "my run"}), {"r": "g"})
    assert [(f.rule, f.numbers["layer"]) for f in found] == [("dead_frac", "d2"), ("sat_frac", "t")]
    assert found[0].text.startswith("Layer d2 has 25% dead ReLU units at the last audit (more than 10%) in run my run. ")
    assert [f.id for f in found] == ["RA220", "RA221"]


def test_a_layer_flagged_in_several_runs_is_one_finding_with_the_range():
    acts = [rows(run, 2, "d", "dead_frac", value) for run, value in (("a", 0.2), ("b", 0.4), ("c", 0.0))]
    (finding,) = D.dead_and_saturated(runset(activations=acts), {})
    assert finding.numbers["values"] == {"a": 0.2, "b": 0.4}
    assert "20% to 40% dead ReLU units" in finding.text and "in 2 of 3 runs (a, b)" in finding.text


def bn_runs(steps, momentum=0.99, share=0.9):
    """Two BN runs whose bn_var_ratio is far from 1 and validate worse, two plain runs."""
    shift, history, tags = [], [], {}
    for run, val in (("bn1", 0.70), ("bn2", 0.72), ("plain1", 0.95), ("plain2", 0.96)):
        history += [dict(rows(run, 1, "model", "accuracy", 0.9), step=steps),
                    dict(rows(run, 1, "model", "val_accuracy", val), step=steps),
                    dict(rows(run, 1, "model", "loss", 0.3), step=steps)]
        tags[run] = {"regaudit.batchnorm_layers": "1" if run.startswith("bn") else "0"}
        if run.startswith("bn"):
            shift += [rows(run, 1, "bn", "bn_var_ratio", 0.2, "BatchNormalization"),
                      rows(run, 1, "bn", "bn_init_share", share, "BatchNormalization"),
                      rows(run, 1, "bn", "bn_dropout_var_ratio", 1.0, "BatchNormalization")]
    runs = runset(history=history, shift=shift, tags=tags)
    runs.layers = pd.DataFrame({"run": ["bn1", "bn2"], "name": "bn", "regularizer": "batchnorm",
                                "momentum": momentum})
    return runs, {r: r.rstrip("12") for r in ("bn1", "bn2", "plain1", "plain2")}


def test_batchnorm_statistics_that_lag_are_connected_to_the_lower_validation_with_remedies():
    runs, groups = bn_runs(steps=300, share=0.9)
    (lag,) = D.batchnorm_lag(runs, groups)
    assert lag.id == "RA210" and lag.level == "notice"
    assert lag.numbers["initial_share_left"] == pytest.approx(0.99**300)
    variance = 0.2 * 0.99**300 / 0.9  # the observed ratio times the median moving variance
    assert lag.numbers["input_variance"] == pytest.approx(variance)
    # Keras' moving average from 1 replayed in numpy: the first step whose remnant of the
    # initial value is under 1% of the moving variance of a constant input
    moving, step = 1.0, 0
    while 0.99**step / moving >= 0.01:
        moving, step = 0.99 * moving + 0.01 * variance, step + 1
    assert abs(lag.numbers["steps_needed"] - step) <= 1
    assert lag.numbers["worse"] and lag.numbers["reference_group"] == "plain"
    for words in ("lag the data in 'bn'", "layer bn sees 0.2 times the variance", "After 300 training steps at momentum 0.99",
                  "still 90% of the median channel's moving variance (bn_init_share)",
                  "'bn' validates worse than 'plain', the same setup without",
                  "val_accuracy 0.71 against 0.955", "momentum=0.9", "re-estimate"):
        assert words in lag.text, words
    (converged,) = D.batchnorm_lag(*bn_runs(steps=300, share=0.05))
    assert converged.id == "RA211" and "It is not its own lag" in converged.text


def test_dropout_before_batchnorm_names_the_variance_shift_and_its_remedies():
    shift = [rows("r", 3, "bn", "bn_var_ratio", 1.3, "BatchNormalization"),
             rows("r", 3, "bn2", "bn_dropout_var_ratio", 1.33, "BatchNormalization"),
             rows("r", 3, "bn", "bn_dropout_var_ratio", 1.05, "BatchNormalization")]
    (found,) = D.dropout_before_batchnorm(runset(shift=shift), {"r": "g"})
    assert found.id == "RA212" and found.numbers["layer"] == "bn2"
    assert "1.33 times" in found.text and "Move that Dropout after the last" in found.text


def test_drift_ranks_layers_and_compares_batchnorm_runs_with_the_others():
    shift, history = [], []
    for run, level in (("bn", 0.1), ("bn_b", 0.11), ("plain", 0.4), ("plain_b", 0.42)):
        for epoch in (1, 2):
            shift += [rows(run, epoch, "a", "drift_w1", level), rows(run, epoch, "b", "drift_w1", 2 * level),
                      rows(run, epoch, "model", "drift_w1_mean", 1.5 * level, "Model")]
            history.append(rows(run, epoch, "model", "loss", 1.0 if epoch == 1 else 0.5))
    tags = {r: {"regaudit.batchnorm_layers": "2" if r.startswith("bn") else "0"} for r in ("bn", "bn_b", "plain", "plain_b")}
    top, versus = F.drift(runset(shift=shift, history=history, tags=tags), {r: r for r in tags})
    assert list(top.numbers) == ["b", "a"] and top.numbers["b"] == pytest.approx(0.515)
    assert versus.numbers["high"] == "without" and versus.numbers["significant"]
    assert "'without' has a higher drift_w1_mean than 'with BatchNormalization'" in versus.text
    assert "training loss fell by 50% with BN" in versus.text


def test_ensemble_gain_is_claimed_only_when_mcnemar_says_so_and_gives_n():
    def ens(run, det, mc, det_only, mc_only, n):
        return [rows(run, 2, "model", m, v, "Model") for m, v in
                (("det_acc", det), ("mc_acc", mc), ("det_only_correct", det_only),
                 ("mc_only_correct", mc_only), ("probe_samples", n), ("acc_at_k:16", mc))]
    table = ens("far", 0.80, 0.90, 2, 52, 500) + ens("near", 0.90, 0.916, 0, 2, 128)
    gain, agree = ensemble_findings.ensemble_gain(runset(ensemble=table), {"far": "g", "near": "g"})
    assert gain.id == "RA230" and gain.level == "notice"
    assert gain.numbers["p"] == pytest.approx(stats.binomtest(2, 54).pvalue)
    assert "would gain 0.100 accuracy at T = 16" in gain.text and "n = 500" in gain.text
    assert agree.id == "RA231" and agree.level == "info" and agree.numbers["runs"] == ["near"]
    assert "n = 128" in agree.text


def test_rules_say_nothing_without_their_data_and_notices_come_first():
    empty = runset(tags={"r": {}})
    assert F.findings(empty, {"r": "g"}) == []
    acts = [rows("r", 2, "d", "dead_frac", 0.5)]
    runs = runset(history=outcome_history({"r": (0.9, 0.8)}), activations=acts)
    found = F.findings(runs, {"r": "g"})
    assert found[0].level == "notice" and all(f.level == "info" for f in found[1:])
    assert len({f.id for f in found}) >= 3 and all(f.id.startswith("RA2") for f in found)


def test_non_finite_activations_are_a_finding_with_the_first_epoch_and_the_largest_fraction():
    acts = [rows("r", 1, "d", "nonfinite_frac", 0.0), rows("r", 2, "d", "nonfinite_frac", 0.01),
            rows("r", 3, "d", "nonfinite_frac", 0.25), rows("r", 3, "e", "nonfinite_frac", 0.0)]
    (finding,) = D.nonfinite(runset(activations=acts, names={"r": "run r"}), {"r": "g"})
    assert finding.numbers == {"layer": "d", "max": 0.25, "first_epoch": 2}
    assert finding.text.startswith("Layer d produced NaN or infinite values: up to 25.00%")
    assert finding.level == "notice"


def test_a_finding_names_at_most_eight_runs_and_says_how_many_more():
    from regaudit.answer.finding import NAMES_SHOWN, names_text, values_text

    names = [f"run-{i}" for i in range(100)]
    assert names_text(names[:3]) == "run-0, run-1, run-2"
    assert names_text(names) == ", ".join(names[:NAMES_SHOWN]) + f" and {100 - NAMES_SHOWN} more"
    assert names_text(["a", "b"], separator="; ") == "a; b"
    amount, where = values_text({name: 0.5 for name in names}, 100)
    assert amount == "0.50" and where.startswith("100 of 100 runs (run-0, ") and "92 more)" in where
