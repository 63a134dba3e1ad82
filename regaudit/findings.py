"""Findings: plain-language statements about audited runs, with the numbers behind them.

Each rule is a small function `rule(runs, groups) -> list[Finding]` over a `RunSet`
(`regaudit.read`) and the runs' group labels; its threshold is in its docstring and in a
module constant. Rules say nothing when their data is missing (a run without Dropout
has no ensemble finding). `findings(runs, groups)` runs them all, most important first.
"""

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from regaudit.schema import MODEL

#: A difference in generalization gap smaller than this is "about the same".
GAP_EPSILON = 0.005
#: A layer with more than this fraction of dead units (final audit) is flagged.
DEAD_LIMIT = 0.10
#: A layer with more than this fraction of saturated sigmoid/tanh values is flagged.
SATURATED_LIMIT = 0.20
#: BN runs "drift less" when their mean drift is below this ratio of the others'.
DRIFT_RATIO = 0.8
#: bn_var_ratio outside [1/BN_RATIO_LIMIT, BN_RATIO_LIMIT] is a variance shift.
BN_RATIO_LIMIT = 1.25
#: bn_dropout_var_ratio above this: Dropout inflates the variance BN sees in training.
DROPOUT_VAR_LIMIT = 1.10
#: |mc_acc - det_acc| at least this: the weight-scaled network is not the MC average.
ENSEMBLE_GAP = 0.01
#: Significance level of the group tests and level of the intervals (95%).
ALPHA = 0.05


@dataclass
class Finding:
    """One statement: `rule` that made it, `text` in plain words, `numbers` behind it,
    `level` "notice" (worth acting on) or "info"."""

    rule: str
    text: str
    numbers: dict = field(default_factory=dict)
    level: str = "info"


def _final(table, measure, layer=MODEL):
    """{run: value} of `measure` at `layer` at each run's last audit."""
    rows = table[(table.measure == measure) & (table.layer == layer)]
    if not len(rows):
        return {}
    rows = rows.sort_values(["run", "epoch", "step"])
    return rows.groupby("run")["value"].last().dropna().to_dict()


def _final_layers(table, measure):
    """DataFrame run, layer, value of `measure` at each run's last audit, every layer."""
    rows = table[table.measure == measure]
    if not len(rows):
        return pd.DataFrame(columns=["run", "layer", "value"])
    last = rows.groupby("run")["epoch"].transform("max")
    return rows[rows.epoch == last][["run", "layer", "value"]]


def _by_group(values, groups):
    """{group: [values of its runs]} in the order the groups first appear."""
    out = {}
    for run, group in groups.items():
        if run in values and np.isfinite(values[run]):
            out.setdefault(group, []).append(float(values[run]))
    return out


def mean_interval(values, level=1 - ALPHA):
    """(mean, low, high): the mean and its t-interval (NaN bounds for one value)."""
    values = np.asarray(values, dtype=float)
    mean = float(values.mean())
    if values.size < 2:
        return mean, float("nan"), float("nan")
    half = stats.t.ppf(0.5 + level / 2, values.size - 1) * stats.sem(values)
    return mean, mean - float(half), mean + float(half)


def hedges_g(a, b):
    """Hedges' g: Cohen's d with the pooled std, times the small-sample correction
    1 - 3 / (4 (na + nb) - 9)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    na, nb = a.size, b.size
    pooled = np.sqrt(((na - 1) * a.var(ddof=1) + (nb - 1) * b.var(ddof=1)) / (na + nb - 2))
    if pooled == 0:
        return float("inf") * np.sign(a.mean() - b.mean()) if a.mean() != b.mean() else 0.0
    return float((a.mean() - b.mean()) / pooled * (1 - 3 / (4 * (na + nb) - 9)))


def _outcome(runs):
    """(measure, values {run: final value}, higher_is_better): the final validation
    accuracy when logged, else the final validation loss."""
    history = runs.history
    for measure, higher in (("val_accuracy", True), ("val_acc", True), ("val_loss", False),
                            ("accuracy", True), ("loss", False)):
        values = _final(history, measure)
        if values:
            return measure, values, higher
    return None, {}, True


def group_statistics(runs, groups):
    """Across seeds: per group the mean of the final outcome (validation accuracy, else
    validation loss) with its 95% t-interval; between every two groups with at least two
    runs each, Welch's t-test and Hedges' g. Differences with p < 0.05 are called
    significant. With at most one run per group: says that no test is possible."""
    measure, values, higher = _outcome(runs)
    by_group = _by_group(values, groups)
    if not by_group:
        return []
    out = []
    summary = {g: mean_interval(v) + (len(v),) for g, v in by_group.items()}
    parts = []
    for group, (mean, low, high, n) in summary.items():
        interval = f" [{low:.4f}, {high:.4f}]" if n > 1 else ""
        parts.append(f"'{group}' {mean:.4f}{interval} (n={n})")
    out.append(Finding("group_statistics", f"Final {measure} by group, mean and 95% interval: "
                       + "; ".join(parts) + ".",
                       {g: {"mean": m, "low": lo, "high": hi, "n": n} for g, (m, lo, hi, n) in summary.items()}))
    testable = [g for g, v in by_group.items() if len(v) >= 2]
    if len(testable) < 2:
        out.append(Finding(
            "group_statistics",
            f"With {'one run' if max(len(v) for v in by_group.values()) < 2 else 'fewer than two runs'} "
            "in most groups no test between groups is possible; train each setup with "
            "several seeds to get one.", {"groups": len(by_group)}))
        return out
    for i, a in enumerate(testable):
        for b in testable[i + 1:]:
            test = stats.ttest_ind(by_group[a], by_group[b], equal_var=False)
            g = hedges_g(by_group[a], by_group[b])
            better = a if (np.mean(by_group[a]) > np.mean(by_group[b])) == higher else b
            verdict = "significant" if test.pvalue < ALPHA else "not significant"
            out.append(Finding(
                "group_test",
                f"'{better}' is better on {measure} than '{b if better == a else a}': "
                f"difference {np.mean(by_group[a]) - np.mean(by_group[b]):+.4f} ('{a}' minus '{b}'), "
                f"Welch t-test p = {test.pvalue:.3g} ({verdict} at {ALPHA}), Hedges' g = {g:.2f}.",
                {"a": a, "b": b, "p": float(test.pvalue), "hedges_g": g,
                 "difference": float(np.mean(by_group[a]) - np.mean(by_group[b]))},
                "notice" if test.pvalue < ALPHA else "info"))
    return out


def generalization_gap(runs, groups):
    """The final generalization gap, train accuracy minus validation accuracy (else
    validation loss minus training loss), per group (mean over its runs): which group
    has the smallest gap and by how much it beats the largest. Differences under 0.005
    are reported as about the same."""
    history = runs.history
    train, val = _final(history, "accuracy"), _final(history, "val_accuracy")
    name = "accuracy (train - validation)"
    if not (train and val):
        train, val = _final(history, "val_loss"), _final(history, "loss")
        name = "loss (validation - train)"
    gaps = {run: train[run] - val[run] for run in train if run in val}
    by_group = {g: float(np.mean(v)) for g, v in _by_group(gaps, groups).items()}
    if not by_group:
        return []
    if len(by_group) == 1:
        (group, gap), = by_group.items()
        return [Finding("generalization_gap", f"The generalization gap in {name} is {gap:.4f}.",
                        {"gap": gap})]
    best = min(by_group, key=by_group.get)
    worst = max(by_group, key=by_group.get)
    difference = by_group[worst] - by_group[best]
    if difference < GAP_EPSILON:
        text = (f"The generalization gaps in {name} are about the same (within {GAP_EPSILON}): "
                + ", ".join(f"'{g}' {v:.4f}" for g, v in by_group.items()) + ".")
        return [Finding("generalization_gap", text, by_group)]
    text = (f"'{best}' has the smallest generalization gap in {name}, {by_group[best]:.4f}: "
            f"{difference:.4f} less than '{worst}' ({by_group[worst]:.4f}).")
    return [Finding("generalization_gap", text, {"gaps": by_group, "best": best, "worst": worst,
                                                   "difference": difference}, "notice")]


def drift(runs, groups):
    """Layer drift (Ioffe & Szegedy 2015): the layers whose distribution moved most
    between consecutive audits (mean `drift_w1` over audits, top three over all runs),
    and whether runs with BatchNormalization drift less than runs without: their mean
    `drift_w1_mean` below 0.8 times the others' (above 1/0.8: more)."""
    shift = runs.shift
    rows = shift[(shift.measure == "drift_w1") & (shift.layer != MODEL)]
    if not len(rows):
        return []
    out = []
    per_layer = rows.groupby("layer")["value"].mean().sort_values(ascending=False)
    top = per_layer.head(3)
    out.append(Finding(
        "drift", "The layers whose distribution drifts most between audits (mean W1 / std): "
        + ", ".join(f"{layer} {value:.3f}" for layer, value in top.items()) + ".",
        top.to_dict()))
    model = shift[(shift.measure == "drift_w1_mean") & (shift.layer == MODEL)]
    per_run = model.groupby("run")["value"].mean().to_dict()
    setup = _tag_values(runs, "regaudit.batchnorm_layers")
    with_bn = [v for r, v in per_run.items() if _as_int(setup.get(r)) > 0]
    without = [v for r, v in per_run.items() if _as_int(setup.get(r)) == 0]
    if with_bn and without:
        ratio = float(np.mean(with_bn) / np.mean(without)) if np.mean(without) > 0 else float("nan")
        if ratio < DRIFT_RATIO:
            verdict, level = "drift less than", "notice"
        elif ratio > 1 / DRIFT_RATIO:
            verdict, level = "drift more than", "notice"
        else:
            verdict, level = "drift about as much as", "info"
        out.append(Finding(
            "drift_batchnorm",
            f"Runs with BatchNormalization {verdict} runs without: mean drift "
            f"{np.mean(with_bn):.3f} against {np.mean(without):.3f} (ratio {ratio:.2f}). "
            "Santurkar et al. (2018) argue BN's benefit does not come from reducing this shift.",
            {"with_batchnorm": float(np.mean(with_bn)), "without": float(np.mean(without)),
             "ratio": ratio}, level))
    return out


def _tag_values(runs, key):
    tags = runs.tags
    rows = tags[tags.key == key]
    return dict(zip(rows.run, rows.value))


def _as_int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _run_names(runs):
    return dict(zip(runs.runs["run"], runs.runs["name"]))


def _per_layer(final, flagged, names):
    """[(layer, {run name: value}, runs with that layer)] of the flagged rows, layers in
    first-seen order: one finding per layer, not one per run."""
    out = []
    for layer in dict.fromkeys(flagged.layer):
        rows = flagged[flagged.layer == layer]
        values = {names.get(r, r): float(v) for r, v in zip(rows.run, rows.value)}
        out.append((layer, values, int(final[final.layer == layer].run.nunique())))
    return out


def _values_text(values, total, unit=""):
    """"0.25 in run a" or "0.13 to 0.17 in 2 of 4 runs (a, b)"."""
    low, high = min(values.values()), max(values.values())
    fmt = (lambda v: f"{v:.0%}") if unit == "%" else (lambda v: f"{v:.2f}")
    amount = fmt(low) if len(values) == 1 or low == high else f"{fmt(low)} to {fmt(high)}"
    runs = ", ".join(values)
    where = f"run {runs}" if len(values) == 1 and total == 1 else f"{len(values)} of {total} runs ({runs})"
    return amount, where


def dead_and_saturated(runs, groups):
    """Layers with more than 10% dead units (`dead_frac`: units that output exactly
    zero on every probe sample) or more than 20% saturated sigmoid/tanh values
    (`sat_frac`) at the last audit; one finding per layer, naming the runs."""
    out = []
    names = _run_names(runs)
    for measure, limit, what in (("dead_frac", DEAD_LIMIT, "dead units"),
                                 ("sat_frac", SATURATED_LIMIT, "saturated values")):
        final = _final_layers(runs.activations, measure)
        final = final[final.layer != MODEL]
        flagged = final[final.value > limit]
        for layer, values, total in _per_layer(final, flagged, names):
            amount, where = _values_text(values, total, "%")
            out.append(Finding(
                measure, f"Layer {layer} has {amount} {what} at the last audit (more than "
                f"{limit:.0%}) in {where}.",
                {"layer": layer, "values": values}, "notice"))
    return out


def nonfinite(runs, groups):
    """Layers that produced NaN or infinite values (`nonfinite_frac` > 0) at any audit:
    the first audit where it happened and the largest fraction, per layer across runs.
    Their other measures are over the finite values only."""
    acts = runs.activations
    rows = acts[(acts.measure == "nonfinite_frac") & (acts.layer != MODEL) & (acts.value > 0)]
    names = _run_names(runs)
    out = []
    for layer in dict.fromkeys(rows.layer):
        part = rows[rows.layer == layer]
        first = part.sort_values(["epoch", "step"]).iloc[0]
        runs_hit = ", ".join(dict.fromkeys(names.get(r, r) for r in part.run))
        out.append(Finding(
            "nonfinite", f"Layer {layer} produced NaN or infinite values: up to "
            f"{part.value.max():.2%} of its outputs, first at epoch {int(first.epoch)} "
            f"(runs: {runs_hit}). Its other measures count only the finite values.",
            {"layer": layer, "max": float(part.value.max()), "first_epoch": int(first.epoch)},
            "notice"))
    return out


def batchnorm_variance_shift(runs, groups):
    """BatchNormalization variance shift (Li et al. 2019) at the last audit: a BN layer
    whose observed input variance over its moving variance (`bn_var_ratio`) lies outside
    [0.8, 1.25], and a BN layer whose input variance with upstream Dropout on is more than
    1.10 times the inference variance (`bn_dropout_var_ratio`): Dropout placed before BN
    shifts the statistics BN learns in training away from those it meets at inference.
    One finding per layer, naming the runs."""
    out = []
    names = _run_names(runs)
    final = _final_layers(runs.shift, "bn_var_ratio")
    flagged = final[(final.value < 1 / BN_RATIO_LIMIT) | (final.value > BN_RATIO_LIMIT)]
    for layer, values, total in _per_layer(final, flagged, names):
        amount, where = _values_text(values, total)
        out.append(Finding(
            "bn_var_ratio", f"BatchNormalization layer {layer} sees {amount} times the "
            f"variance its moving statistics assume at inference, in {where}.",
            {"layer": layer, "values": values}, "notice"))
    final = _final_layers(runs.shift, "bn_dropout_var_ratio")
    flagged = final[final.value > DROPOUT_VAR_LIMIT]
    for layer, values, total in _per_layer(final, flagged, names):
        amount, where = _values_text(values, total)
        out.append(Finding(
            "bn_dropout_var_ratio", f"Dropout upstream of BatchNormalization layer {layer} "
            f"makes the variance it sees in training {amount} times the variance at "
            f"inference, in {where}: the variance shift of Li et al. (2019). Moving that "
            "Dropout after the last BN avoids it.",
            {"layer": layer, "values": values}, "notice"))
    return out


def ensemble_gap(runs, groups):
    """How far the single weight-scaled network Keras uses at inference is from the
    Monte-Carlo dropout average at the last audit: |mc_acc - det_acc| of at least 0.01
    (one point of accuracy) is reported per run, else that they agree within 0.01."""
    ensemble = runs.ensemble
    det, mc = _final(ensemble, "det_acc"), _final(ensemble, "mc_acc")
    kl = _final(ensemble, "det_mc_kl")
    names = _run_names(runs)
    out = []
    agree = []
    for run in det:
        if run not in mc:
            continue
        gap = mc[run] - det[run]
        if abs(gap) >= ENSEMBLE_GAP:
            better = "better" if gap > 0 else "worse"
            out.append(Finding(
                "ensemble_gap", f"In run {names.get(run, run)} the Monte-Carlo dropout ensemble is "
                f"{abs(gap):.3f} {better} in accuracy than the weight-scaled network "
                f"({mc[run]:.3f} against {det[run]:.3f}; KL {kl.get(run, float('nan')):.4f}).",
                {"run": run, "det_acc": det[run], "mc_acc": mc[run], "gap": gap}, "notice"))
        else:
            agree.append(names.get(run, run))
    if agree:
        out.append(Finding(
            "ensemble_gap", "The weight-scaled network matches the Monte-Carlo dropout "
            f"average within {ENSEMBLE_GAP} accuracy in " + ", ".join(agree) + ".",
            {"runs": agree}))
    return out


RULES = (nonfinite, generalization_gap, group_statistics, batchnorm_variance_shift,
         dead_and_saturated, drift, ensemble_gap)


def findings(runs, groups):
    """Every rule's findings; notices first, in rule order."""
    found = []
    for rule in RULES:
        found.extend(rule(runs, groups))
    return sorted(found, key=lambda f: f.level != "notice")
