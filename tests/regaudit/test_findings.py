"""Findings on constructed tables where the right answer is known."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from regaudit import findings as F
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


def test_generalization_gap_names_the_group_with_the_smaller_gap_and_by_how_much():
    runs = runset(history=outcome_history({"a1": (0.99, 0.90), "a2": (0.97, 0.90),
                                           "b1": (0.95, 0.93), "b2": (0.95, 0.94)}))
    groups = {"a1": "none", "a2": "none", "b1": "dropout", "b2": "dropout"}
    (finding,) = F.generalization_gap(runs, groups)
    assert finding.numbers["best"] == "dropout" and finding.numbers["worst"] == "none"
    assert finding.numbers["gaps"]["none"] == pytest.approx(0.08)
    assert finding.numbers["gaps"]["dropout"] == pytest.approx(0.015)
    assert finding.numbers["difference"] == pytest.approx(0.065)
    assert "'dropout' has the smallest generalization gap" in finding.text


def test_generalization_gaps_within_the_threshold_are_about_the_same():
    runs = runset(history=outcome_history({"a": (0.95, 0.90), "b": (0.951, 0.902)}))
    (finding,) = F.generalization_gap(runs, {"a": "x", "b": "y"})
    assert "about the same" in finding.text and finding.level == "info"


def test_group_statistics_match_scipy_welch_and_hedges_g():
    a, b = [0.91, 0.93, 0.92], [0.95, 0.96, 0.97]
    values = {f"a{i}": (1.0, v) for i, v in enumerate(a)} | {f"b{i}": (1.0, v) for i, v in enumerate(b)}
    groups = {run: run[0] for run in values}
    found = F.group_statistics(runset(history=outcome_history(values)), groups)
    summary, test = found
    mean, low, high = np.mean(a), *stats.t.interval(0.95, 2, loc=np.mean(a), scale=stats.sem(a))
    assert summary.numbers["a"]["mean"] == pytest.approx(mean)
    assert summary.numbers["a"]["low"] == pytest.approx(low)
    assert summary.numbers["a"]["high"] == pytest.approx(high)
    welch = stats.ttest_ind(a, b, equal_var=False)
    assert test.numbers["p"] == pytest.approx(welch.pvalue)
    pooled = np.sqrt((np.var(a, ddof=1) + np.var(b, ddof=1)) / 2)  # equal sizes
    assert test.numbers["hedges_g"] == pytest.approx((np.mean(a) - np.mean(b)) / pooled * (1 - 3 / 15))
    assert test.text.startswith("'b' is better on val_accuracy")
    assert "significant at 0.05" in test.text and test.level == "notice"


def test_one_run_per_group_says_no_test_is_possible():
    runs = runset(history=outcome_history({"a": (0.99, 0.9), "b": (0.99, 0.95)}))
    found = F.group_statistics(runs, {"a": "none", "b": "dropout"})
    assert len(found) == 2 and "no test between groups is possible" in found[1].text
    assert "n=1" in found[0].text and "[" not in found[0].text.split(":", 1)[1]


def test_dead_and_saturated_units_are_flagged_above_their_thresholds_at_the_last_audit():
    acts = [rows("r", 1, "d1", "dead_frac", 0.5),   # only the last audit counts
            rows("r", 2, "d1", "dead_frac", 0.05), rows("r", 2, "d2", "dead_frac", 0.25),
            rows("r", 2, "t", "sat_frac", 0.21), rows("r", 2, "t2", "sat_frac", 0.2)]
    found = F.dead_and_saturated(runset(activations=acts, names={"r": "my run"}), {"r": "g"})
    assert [(f.rule, f.numbers["layer"]) for f in found] == [("dead_frac", "d2"), ("sat_frac", "t")]
    assert found[0].text == "Layer d2 has 25% dead units at the last audit (more than 10%) in run my run."


def test_a_layer_flagged_in_several_runs_is_one_finding_with_the_range():
    acts = [rows(run, 2, "d", "dead_frac", value) for run, value in (("a", 0.2), ("b", 0.4), ("c", 0.0))]
    (finding,) = F.dead_and_saturated(runset(activations=acts), {})
    assert finding.numbers["values"] == {"a": 0.2, "b": 0.4}
    assert "20% to 40% dead units" in finding.text and "in 2 of 3 runs (a, b)" in finding.text


def test_batchnorm_variance_shift_and_the_dropout_that_causes_it():
    shift = [rows("r", 3, "bn", "bn_var_ratio", 1.3, "BatchNormalization"),
             rows("r", 3, "bn2", "bn_var_ratio", 1.0, "BatchNormalization"),
             rows("r", 3, "bn2", "bn_dropout_var_ratio", 1.33, "BatchNormalization"),
             rows("r", 3, "bn", "bn_dropout_var_ratio", 1.05, "BatchNormalization")]
    found = F.batchnorm_variance_shift(runset(shift=shift), {"r": "g"})
    assert [(f.rule, f.numbers["layer"]) for f in found] == [("bn_var_ratio", "bn"),
                                                             ("bn_dropout_var_ratio", "bn2")]
    assert "1.33 times" in found[1].text


def test_drift_ranks_layers_and_compares_batchnorm_runs_with_the_others():
    shift = []
    for run, level in (("bn", 0.1), ("plain", 0.4)):
        for epoch in (1, 2):
            shift += [rows(run, epoch, "a", "drift_w1", level), rows(run, epoch, "b", "drift_w1", 2 * level),
                      rows(run, epoch, "model", "drift_w1_mean", 1.5 * level, "Model")]
    tags = {"bn": {"regaudit.batchnorm_layers": "2"}, "plain": {"regaudit.batchnorm_layers": "0"}}
    top, versus = F.drift(runset(shift=shift, tags=tags), {"bn": "bn", "plain": "plain"})
    assert list(top.numbers) == ["b", "a"] and top.numbers["b"] == pytest.approx(0.5)
    assert versus.numbers["ratio"] == pytest.approx(0.25)
    assert versus.text.startswith("Runs with BatchNormalization drift less than runs without")


def test_ensemble_gap_reports_runs_past_one_point_and_agreement_otherwise():
    ens = [rows("far", 2, "model", "det_acc", 0.90, "Model"), rows("far", 2, "model", "mc_acc", 0.92, "Model"),
           rows("near", 2, "model", "det_acc", 0.90, "Model"), rows("near", 2, "model", "mc_acc", 0.905, "Model")]
    far, near = F.ensemble_gap(runset(ensemble=ens), {"far": "g", "near": "g"})
    assert far.numbers["gap"] == pytest.approx(0.02) and "0.020 better" in far.text
    assert near.numbers["runs"] == ["near"] and far.level == "notice"


def test_rules_say_nothing_without_their_data_and_notices_come_first():
    empty = runset(tags={"r": {}})
    assert F.findings(empty, {"r": "g"}) == []
    acts = [rows("r", 2, "d", "dead_frac", 0.5)]
    runs = runset(history=outcome_history({"r": (0.9, 0.8)}), activations=acts)
    found = F.findings(runs, {"r": "g"})
    assert found[0].level == "notice" and all(f.level == "info" for f in found[1:])


def test_non_finite_activations_are_a_finding_with_the_first_epoch_and_the_largest_fraction():
    acts = [rows("r", 1, "d", "nonfinite_frac", 0.0), rows("r", 2, "d", "nonfinite_frac", 0.01),
            rows("r", 3, "d", "nonfinite_frac", 0.25), rows("r", 3, "e", "nonfinite_frac", 0.0)]
    (finding,) = F.nonfinite(runset(activations=acts, names={"r": "run r"}), {"r": "g"})
    assert finding.numbers == {"layer": "d", "max": 0.25, "first_epoch": 2}
    assert finding.text.startswith("Layer d produced NaN or infinite values: up to 25.00%")
    assert finding.level == "notice"
