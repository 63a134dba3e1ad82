"""RA213: the BatchNormalization remedy, measured (`regaudit.callbacks.families.bn_reestimation`).

At train end `RegAudit` re-estimates BN's moving statistics on a copy of the model (the
training probe through it in training mode, every noise source off, cumulative averages)
and scores the validation probe before and after. Per group, the paired change of the
validation accuracy (else loss) over its runs: the mean, its 95% t-interval (an
accuracy's within [-1, 1]) and the paired t-test, Holm-corrected over the groups. A
significant gain says the moving statistics, not the weights, cost that much at inference
(RA210's lag, RA212's variance shift); the remedy is one call.
"""

import numpy as np
from scipy import stats

from regaudit.answer.levels import NOTICE, INFO
from regaudit.answer.finding import Finding, finding_rule, number, p_text
from regaudit.answer.precision import interval, shown
from regaudit.measures.registry import AS_LOGGED, MODEL_WIDE, declare, fill
from regaudit.schema import MODEL, TABLE_SHIFT
from regaudit.answer.statistics import bounded_interval, holm, level

_DEFINITION = """the validation probe scored with the model's compiled loss or metric
{when} re-estimating every BatchNormalization layer's moving statistics on a copy of the
model (the training probe through it in training mode, every noise source off,
cumulative averages), at train end: what the moving statistics cost at inference."""
BN_REESTIMATED_BEFORE = declare(
    "bn_reestimated_val_<metric>_before", table=TABLE_SHIFT, scope=MODEL_WIDE, unit=AS_LOGGED,
    headline=True, doc="bn_reestimated_val_<metric>_before: " + _DEFINITION.format(when="before"))
BN_REESTIMATED_AFTER = declare(
    "bn_reestimated_val_<metric>_after", table=TABLE_SHIFT, scope=MODEL_WIDE, unit=AS_LOGGED,
    headline=True, doc="bn_reestimated_val_<metric>_after: " + _DEFINITION.format(when="after"))
RULE = ("RA213", "batchnorm_reestimated")


def remedy_pairs(runs, metric):
    """{run: (validation `metric` before, after)} of the runs where the remedy was measured
    (both finite)."""
    table = runs.shift
    names = fill(BN_REESTIMATED_BEFORE, metric=metric), fill(BN_REESTIMATED_AFTER, metric=metric)
    rows = table[(table.layer == MODEL) & table.measure.isin(names)]
    out = {}
    for run, part in rows.groupby("run"):
        values = dict(zip(part.measure, part.value))
        before, after = values.get(names[0]), values.get(names[1])
        if before is not None and after is not None and np.isfinite([before, after]).all():
            out[run] = (float(before), float(after))
    return out


@finding_rule("RA213", order=60,
              summary='the BatchNormalization remedy, measured: validation before and after re-estimating the moving statistics at train end (paired t-test over the runs)', evidence=(BN_REESTIMATED_BEFORE, BN_REESTIMATED_AFTER),
              titles={"RA213": "BN statistics re-estimated after training"})
def batchnorm_reestimated(runs, groups):
    """[RA213 per group with the measured remedy]."""
    if not len(runs.shift):
        return []
    metric = "accuracy" if remedy_pairs(runs, "accuracy") else "loss"
    pairs = remedy_pairs(runs, metric)
    if not pairs:
        return []
    higher = metric == "accuracy"
    by_group = {}
    for run, pair in pairs.items():
        by_group.setdefault(groups.get(run, "(none)"), []).append(pair)
    tested = {g: p for g, p in by_group.items() if len(p) >= 2}
    raw = {g: float(stats.ttest_1samp([a - b for b, a in p], 0.0).pvalue)
           if np.ptp([a - b for b, a in p]) > 0 else (0.0 if p[0][1] != p[0][0] else 1.0)
           for g, p in tested.items()}
    adjusted = dict(zip(raw, holm(list(raw.values())))) if raw else {}
    out = []
    for group, values in by_group.items():
        before, after = np.array(values).T
        change = after - before
        bounds = (-1.0, 1.0) if higher else (-np.inf, np.inf)
        mean, low, high = bounded_interval(change, bounds)
        numbers = {"group": group, "measure": f"val_{metric}", "before": float(before.mean()),
                   "after": float(after.mean()), "change": mean, "low": low, "high": high,
                   "runs": len(values)}
        head = (f"Re-estimating BatchNormalization's moving statistics after training (training "
                f"probe, Dropout off) changes the validation probe's {metric} in '{group}' from "
                f"{number(before.mean())} to {number(after.mean())}")
        if group not in adjusted:
            text = head + " (one run: no test)."
            severity = INFO
        else:
            p = float(adjusted[group])
            numbers |= {"p_holm": p}
            significant = p < level()
            better = significant and (mean > 0) == higher
            test = (f"mean change {mean:+.4g} over {len(values)} runs, 95% interval [{low:+.4g}, "
                    f"{high:+.4g}], paired t-test Holm-adjusted {p_text(p)}")
            if better:
                text = (f"{head} ({test}): the moving statistics, not the weights, cost that at "
                        "inference. Re-estimate them before using the model "
                        "(`regaudit.reestimate_batchnorm(model, x_train)` returns the repaired copy), "
                        "or train with a lower BN momentum.")
            elif significant:
                text = f"{head} ({test}): here the re-estimated statistics do worse; keep the model's own."
            else:
                text = (f"{head} ({test}): no detectable change with these runs; whether the "
                        "moving statistics cost accuracy here they do not show.")
            severity = NOTICE if better else INFO
        out.append(Finding(*RULE, text, numbers, severity, about=f"'{group}'",
                           brief=f"{metric} from {shown(before.mean())} to {shown(after.mean())}"
                           + (f" ({interval(mean, low, high, signed=True)})" if len(values) > 1 else ""),
                           weight=abs(mean)))
    return out
