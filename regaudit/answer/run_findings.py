"""Findings: plain-language statements about audited runs, with the numbers behind them.

Each rule is a small function `rule(runs, groups) -> list[Finding]` over a `RunSet`
(`regaudit.read`) and the runs' group labels; its threshold and source are in its
docstring and a module constant. Rules say nothing when their data is missing.
`findings(runs, groups)` runs them all (these group comparisons, the diagnoses of
`regaudit.answer.diagnoses` and the seed article's claims of `regaudit.answer.claims`), notices first.

Rule ids (stable, for CI gates on `regaudit show --json`):
RA201 outcome by group, RA202 group difference, RA203 generalization gap,
RA210-RA222 diagnoses (`regaudit.answer.diagnoses`; RA213, the BN remedy measured, in
`regaudit.answer.remedy_findings`), RA230-RA231 dropout ensemble,
RA240-RA241 drift, RA251-RA257 the seed article's claims (`regaudit.answer.claims`), RA260 a
study's recommendation (`regaudit.studies.recommend`, runs grouped by variant), RA261 the
Dropout x BN interaction (`regaudit.studies.effects`).
"""

import numpy as np

from regaudit.measures.shift import DRIFT_W1, DRIFT_W1_MEAN
from regaudit.answer import outcomes
from regaudit.answer.outcomes import GEN_GAP_ACC, GEN_GAP_LOSS
from regaudit.answer.finding import Finding, comparison_text, finding_rule, finding_rules, number
from regaudit.answer.precision import interval, shown
from regaudit.answer.levels import INFO, NOTICE
from regaudit.schema import MODEL
from regaudit.model.tags import repeats_input
from regaudit.answer.statistics import bounded_interval, compare_groups

#: the widest difference a generalization gap allows (an accuracy gap lies in [-1, 1])
GAP_SPAN = {GEN_GAP_ACC: 2.0}
#: A training loss that fell by less than this fraction from the first to the last epoch:
#: the model barely learned, so a small drift says nothing about BatchNormalization.
LEARNED_DROP = 0.10


@finding_rule("RA201", "RA202", order=30,
              summary='final validation accuracy (else validation loss) per group with its 95% interval; differences between groups',
              titles={"RA201": "Final outcome per group", "RA202": "Outcome differences"})
def outcome_by_group(runs, groups):
    """RA201/RA202: per group the mean final outcome (validation accuracy, else validation
    loss) with its 95% t-interval, kept within the outcome's bounds (an accuracy's in
    [0, 1]); then every pair of groups with two runs or more compared by Welch's t-test,
    Holm-corrected over the pairs, with Hedges' g, and, where nothing is significant, the
    difference these seeds could detect with 80% power (`regaudit.answer.statistics`)."""
    measure, values, higher, bounds = outcomes.outcome(runs)
    by_group = outcomes.by_group(values, groups)
    if not by_group:
        return []
    summary = {g: bounded_interval(v, bounds) + (len(v),) for g, v in by_group.items()}
    parts = []
    for group, (mean, low, high, n) in summary.items():
        parts.append(f"'{group}' {_with_interval(mean, low, high, n)} (n = {n})")
    out = [Finding("RA201", "outcome_by_group", f"Final {measure} by group, mean over runs: "
                   + "; ".join(parts) + ".",
                   {"measure": measure, "higher_is_better": higher,
                    "groups": {g: dict(mean=m, low=lo, high=hi, n=n)
                               for g, (m, lo, hi, n) in summary.items()}},
                   about=f"{len(summary)} group{'s' if len(summary) > 1 else ''}",
                   brief=_best_text(summary, measure, higher))]
    comparisons = compare_groups(by_group)
    if not comparisons:
        if len(by_group) > 1:
            out.append(Finding(
                "RA202", "group_difference",
                f"No group has two runs or more, so no difference in {measure} between groups "
                "can be tested; train each setup with several seeds (3 or more) to get one.",
                {"measure": measure, "groups": len(by_group)}, about=f"{len(by_group)} groups",
                brief="one run per group: no test; train 3 seeds or more"))
        return out
    meaning = "better" if higher else "worse"
    for c in comparisons:
        out.append(Finding("RA202", "group_difference",
                           comparison_text(c, measure, meaning, bounds[1] - bounds[0]),
                           {"measure": measure, "higher_is_better": higher,
                            "span": bounds[1] - bounds[0]} | c.as_numbers(),
                           NOTICE if c.significant else INFO, **comparison_brief(c, measure)))
    return out


def _with_interval(mean, low, high, n):
    """'0.984, 95% interval [0.972, 0.996]' at the interval's precision; the mean alone for one run."""
    if n < 2:
        return shown(mean)
    both = interval(mean, low, high)
    return both.replace(" [", ", 95% interval [", 1) if "[" in both else both


def _best_text(summary, measure, higher):
    """'best: 'x' 0.984 [0.972, 0.996]' of {group: (mean, low, high, n)}."""
    best = (max if higher else min)(summary, key=lambda g: summary[g][0])
    mean, low, high, n = summary[best]
    value = interval(mean, low, high) if n > 1 else shown(mean)
    return f"{'highest' if higher else 'lowest'} {measure}: '{best}' {value}"


def comparison_brief(c, measure):
    """The grouped view of a `statistics.Comparison`: the pair, and the difference with its
    Holm p, or that none is detectable (weight: significant first, then the difference)."""
    about = f"'{c.high}' vs '{c.low}'"
    if c.significant:
        brief = f"{measure} {shown(c.difference, signed=True)} higher, Holm-adjusted p = {c.p_holm:.2g}"
    else:
        brief = "no detectable difference"
    # a difference shown first; one not shown after its rule's summary (weight 0)
    return {"about": about, "brief": brief,
            "weight": (1.0 if c.significant else -1.0) + abs(float(c.difference)) / (1 + abs(float(c.difference)))}


@finding_rule("RA203", order=40,
              summary='the generalization gap per group, and differences between groups', evidence=(GEN_GAP_ACC, GEN_GAP_LOSS),
              titles={"RA203": "Generalization gap"})
def generalization_gap(runs, groups):
    """RA203: the final generalization gap (`regaudit.answer.outcomes`: accuracy - val_accuracy,
    else val_loss - loss) per group with its 95% interval, and the pairs of groups whose
    gaps differ by the Holm-corrected Welch test; with one run per group, the gaps only."""
    name, gaps = outcomes.final_gap(runs)
    by_group = outcomes.by_group(gaps, groups)
    if not by_group:
        return []
    words = outcomes.GAP_WORDS[name]
    summary = {g: bounded_interval(v) + (len(v),) for g, v in by_group.items()}
    parts = []
    for group, (mean, low, high, n) in summary.items():
        parts.append(f"'{group}' {_with_interval(mean, low, high, n)} (n = {n})")
    out = [Finding("RA203", "generalization_gap",
                   f"Final {words} by group, positive when the model does better on its "
                   "training data: " + "; ".join(parts) + ".",
                   {"measure": name, "groups": {g: dict(mean=m, low=lo, high=hi, n=n)
                                                for g, (m, lo, hi, n) in summary.items()}},
                   about=f"{len(summary)} group{'s' if len(summary) > 1 else ''}",
                   brief=_best_text(summary, name, False))]
    for c in compare_groups(by_group):
        out.append(Finding("RA203", "generalization_gap",
                           comparison_text(c, name, "overfits more", GAP_SPAN.get(name, np.inf)),
                           {"measure": name, "span": GAP_SPAN.get(name, np.inf)} | c.as_numbers(),
                           NOTICE if c.significant else INFO,
                           **comparison_brief(c, name)))
    return out


def learned(runs):
    """{run: relative drop of the training loss from the first to the last epoch}."""
    history = runs.history
    loss = history[(history.measure == "loss") & (history.layer == MODEL)].sort_values("epoch")
    out = {}
    for run, part in loss.groupby("run"):
        first, last = float(part.value.iloc[0]), float(part.value.iloc[-1])
        if np.isfinite(first) and np.isfinite(last) and first > 0:
            out[run] = (first - last) / first
    return out


@finding_rule("RA240", "RA241", order=90,
              summary='the layers that drift most; drift with and without BatchNormalization, next to how much each learned', evidence=(DRIFT_W1, DRIFT_W1_MEAN),
              titles={"RA240": "Layers that drift most", "RA241": "Drift with vs without BN"})
def drift(runs, groups):
    """RA240/RA241, layer drift (Ioffe & Szegedy 2015): the three layers whose distribution
    moved most between consecutive audits (mean `drift_w1`; layers that repeat their input
    at inference, as Dropout and Flatten, left out), and runs with
    BatchNormalization against runs without on their mean `drift_w1_mean`, by the same
    Holm-corrected Welch test, next to how much each set's training loss fell (a model
    that barely learned, loss down less than 10%, barely drifts either)."""
    shift = runs.shift
    rows = shift[(shift.measure == DRIFT_W1) & (shift.layer != MODEL)]
    rows = rows[[not repeats_input(c) for c in rows.layer_class]]  # a Dropout repeats its input
    if not len(rows):
        return []
    per_layer = rows.groupby("layer")["value"].mean().sort_values(ascending=False)
    top = per_layer.head(3)
    out = [Finding("RA240", "drift",
                   "The layers whose distribution drifts most between audits (mean W1 over the "
                   "earlier std): " + ", ".join(f"{layer} {value:.3f}" for layer, value in top.items())
                   + ".", top.to_dict(), about=", ".join(map(str, top.index)),
                   brief=f"mean drift_w1 up to {shown(float(top.iloc[0]))}")]
    model = shift[(shift.measure == DRIFT_W1_MEAN) & (shift.layer == MODEL)]
    per_run = model.groupby("run")["value"].mean().to_dict()
    setup = outcomes.setups(runs)
    sets = {"with BatchNormalization": [r for r in per_run if setup[r]["batchnorm"]],
            "without": [r for r in per_run if not setup[r]["batchnorm"]]}
    if not all(sets.values()):
        return out
    drop = learned(runs)
    values = {label: [per_run[r] for r in members] for label, members in sets.items()}
    learning = " and ".join(
        f"by {np.mean([drop[r] for r in members if r in drop]):.0%} "
        f"{'with' if label != 'without' else 'without'} BN"
        for label, members in sets.items() if any(r in drop for r in members))
    barely = [label for label, members in sets.items()
              if any(r in drop for r in members)
              and np.mean([drop[r] for r in members if r in drop]) < LEARNED_DROP]
    comparisons = compare_groups(values)
    numbers = {label: float(np.mean(v)) for label, v in values.items()} | {
        "loss_drop": {label: float(np.mean([drop[r] for r in m if r in drop]))
                      for label, m in sets.items() if any(r in drop for r in m)}}
    if comparisons:
        c = comparisons[0]
        text = "Drift between audits, runs with and without BatchNormalization. " + comparison_text(
            c, DRIFT_W1_MEAN, "drifts more")
        numbers |= c.as_numbers()
        level = NOTICE if c.significant else INFO
    else:
        text = (f"Mean drift between audits: {number(numbers['with BatchNormalization'])} in runs with "
                f"BatchNormalization, {number(numbers['without'])} without (too few runs to test).")
        level = INFO
    text += f" Over the same runs the training loss fell {learning}." if learning else ""
    if barely:
        text += (" The runs " + " and the runs ".join(barely) + " barely learned (training loss "
                 f"down less than {LEARNED_DROP:.0%}), so a low drift there says little.")
    text += " Santurkar et al. (2018) argue BN's benefit does not come from reducing this drift."
    said = (comparison_brief(comparisons[0], DRIFT_W1_MEAN) if comparisons else
            {"about": "with vs without BatchNormalization", "brief": "too few runs to test"})
    out.append(Finding("RA241", "drift_batchnorm", text, numbers, level, about=said["about"],
                       brief=said["brief"]))
    return out


#: the findings that compare groups: a row of the report's comparisons table when tested
COMPARISONS = ("RA202", "RA203")


def findings(runs, groups):
    """Every declared rule's findings (`finding.finding_rules`); a study's recommendation
    first, then notices, each in rule order."""
    from regaudit.studies.recommend import RULE as RECOMMENDATION

    found = []
    for rule in finding_rules():
        found.extend(rule(runs, groups))
    return sorted(found, key=lambda f: (f.id != RECOMMENDATION[0], f.level != NOTICE))
