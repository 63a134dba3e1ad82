"""Diagnoses: a measured cause, the effect it explains, and a remedy a user can act on.

Each rule is `rule(runs, groups) -> list[Finding]` (see `regaudit.answer.run_findings`); its
threshold and source are in its docstring and a module constant.
"""


import numpy as np

from regaudit.answer.levels import NOTICE
from regaudit.measures.activations import DEAD_FRAC, NONFINITE_FRAC, SAT_FRAC
from regaudit.measures.shift import BN_DROPOUT_VAR_RATIO, BN_INIT_SHARE, BN_VAR_RATIO
from regaudit.answer import outcomes
from regaudit.measures.batchnorm_lag import (DEFAULT_MOMENTUM, LAG_SHARE, current_variance, initial_weight,
                                    steps_to_catch_up)
from regaudit.model.layer_graph import ancestors
from regaudit.answer.finding import (
    Finding, finding_rule, names_text, number, per_layer, significance_words, values_text,
)
from regaudit.answer.precision import shown
from regaudit.schema import MODEL
from regaudit.answer.statistics import compare_groups

#: bn_var_ratio outside [1/BN_RATIO_LIMIT, BN_RATIO_LIMIT]: BN's inference statistics
#: do not fit the data it normalizes.
BN_RATIO_LIMIT = 1.25
#: A lower momentum the remedy proposes.
REMEDY_MOMENTUM = 0.9
#: bn_dropout_var_ratio above this: Dropout inflates the variance BN sees in training.
DROPOUT_VAR_LIMIT = 1.10
#: A layer with more than this fraction of dead ReLU units (final audit) is flagged.
DEAD_LIMIT = 0.10
#: A layer with more than this fraction of saturated sigmoid/tanh values is flagged.
SATURATED_LIMIT = 0.20


def _momenta(runs):
    """{(run, layer): momentum} of the BatchNormalization layers (Keras' default when
    the run's layer table predates the column)."""
    layers = runs.layers
    if not len(layers) or "momentum" not in layers or "regularizer" not in layers:
        return {}
    rows = layers[layers.regularizer == "batchnorm"]
    return {(r, n): (float(m) if m is not None and np.isfinite(m) else DEFAULT_MOMENTUM)
            for r, n, m in zip(rows.run, rows.name, rows.momentum)}


def _outcome_link(runs, groups, group):
    """The sentence that sets `group`'s final outcome against the group without
    BatchNormalization and otherwise the same setup (else the best group without BN),
    with its test; "" when there is none to compare with."""
    measure, values, higher, _ = outcomes.outcome(runs)
    by_group = outcomes.by_group(values, groups)
    setup = outcomes.setups(runs)
    flags = {}
    for run, g in groups.items():
        if run in setup:
            flags.setdefault(g, (setup[run]["dropout"], setup[run]["batchnorm"]))
    plain = [g for g in by_group if g != group and not flags.get(g, (False, True))[1]]
    if group not in by_group or not plain:
        return "", {}
    twin = [g for g in plain if flags[g][0] == flags.get(group, (None,))[0]]
    best = twin[0] if twin else max(plain, key=lambda g: np.mean(by_group[g]) * (1 if higher else -1))
    mine, theirs = float(np.mean(by_group[group])), float(np.mean(by_group[best]))
    worse = mine < theirs if higher else mine > theirs
    comparisons = {frozenset((c.high, c.low)): c for c in compare_groups(by_group)}
    c = comparisons.get(frozenset((group, best)))
    test = significance_words(c)
    verb = "worse" if worse else "no worse"
    text = (f" '{group}' validates {verb} than '{best}', the same setup without "
            f"BatchNormalization ({measure} {number(mine)} against {number(theirs)}; {test})")
    return text, {"outcome": measure, "group_value": mine, "reference_group": best,
                  "reference_value": theirs, "worse": worse,
                  "significant": bool(c is not None and c.significant)}


def _is_upstream(layers, run, ancestor, layer):
    """Whether `ancestor` feeds `layer` (through any path) in `run`'s layer table."""
    if not len(layers) or "sources" not in layers:
        return False
    rows = layers[layers.run == run]
    by_name = {name: {"name": name, "sources": list(src) if src is not None else []}
               for name, src in zip(rows.name, rows.sources)}
    if layer not in by_name:
        return False
    return any(row["name"] == ancestor for row in ancestors(by_name[layer], by_name))


@finding_rule("RA210", "RA211", order=50,
              summary="BatchNormalization statistics that lag the data (RA210: the initial moving variance still weighs) or do not fit it at inference (RA211), next to the group's validation result, with remedies", evidence=(BN_VAR_RATIO, BN_INIT_SHARE),
              titles={"RA210": "BN statistics lag the data", "RA211": "BN statistics do not fit the data"})
def batchnorm_lag(runs, groups):
    """RA210/RA211, BatchNormalization statistics against the data (Ioffe & Szegedy 2015;
    Li et al. 2019). At the last audit, a BN layer whose input variance over its moving
    variance (`bn_var_ratio`) lies outside [0.8, 1.25] normalizes at inference with
    statistics that do not fit. The moving variance starts at 1; `bn_init_share` is the
    share of it that is still that initial value (median channel). At 0.2 or more the
    initial value alone pulls the ratio to 0.8 or below: lag (RA210), the moving variance
    has not caught up with inputs whose variance is far from 1; remedies: a lower
    momentum, more steps, re-estimating the statistics. Otherwise (RA211) the statistics
    trail an input that still changes, or the training batches differ from the inference
    data, or (when a BN upstream lags) it inherits that layer's inference scale. One
    finding per group and layer, in graph order, next to the group's validation outcome
    against the same setup without BN. Runs written before `bn_init_share` existed fall
    back to momentum^steps > 1%."""
    final = outcomes.final_layers(runs.shift, BN_VAR_RATIO)
    if not len(final):
        return []
    flagged = final[(final.value < 1 / BN_RATIO_LIMIT) | (final.value > BN_RATIO_LIMIT)]
    shares = outcomes.final_layers(runs.shift, BN_INIT_SHARE)
    known = {"shares": {(r, l): float(v) for r, l, v in zip(shares.run, shares.layer, shares.value)},
             "names": outcomes.run_names(runs), "momenta": _momenta(runs),
             "steps": outcomes.final_step(runs)}
    out = []
    lagging_layers = {}  # group -> the layers found lagging, in graph order
    flagged = flagged.assign(group=flagged.run.map(groups))
    for (group, layer), part in flagged.groupby(["group", "layer"], sort=False):
        members = [r for r, g in groups.items() if g == group
                   and r in set(final[final.layer == layer].run)]
        evidence = _batchnorm_evidence(runs, groups, group, layer, part, members, known)
        if evidence["lagging"]:
            lagging_layers.setdefault(group, []).append(layer)
            out.append(_lag_finding(group, evidence))
            continue
        upstream = [other for other in lagging_layers.get(group, [])
                    if other != layer and _is_upstream(runs.layers, part.run.iloc[0], other, layer)]
        out.append(_mismatch_finding(group, evidence, upstream))
    return out


def _batchnorm_evidence(runs, groups, group, layer, part, members, known):
    """What RA210/RA211 say of one flagged BN layer in one group: the ratios, momentum,
    steps, the initial value's share left, the input variance, the outcome link."""
    ratios = {known["names"].get(r, r): float(v) for r, v in zip(part.run, part.value)}
    pairs = list(zip(part.run, part.layer))
    shares = known["shares"]
    momentum = max(known["momenta"].get(pair, DEFAULT_MOMENTUM) for pair in pairs)
    trained = min(known["steps"].get(r, 0) for r, _ in pairs)
    left = initial_weight(momentum, trained)
    found = [shares[pair] for pair in pairs if pair in shares and np.isfinite(shares[pair])]
    share = float(np.median(found)) if found else None
    variance = (current_variance(momentum, trained, share, float(np.median(list(ratios.values()))))
                if share is not None else float("nan"))
    low, high = min(ratios.values()), max(ratios.values())
    seen = (f"BatchNormalization layer {layer} sees {number(low, 2)}"
            + (f" to {number(high, 2)}" if number(high, 2) != number(low, 2) else "")
            + " times the variance its moving statistics assume (bn_var_ratio at the last "
            f"audit, 1 = they agree; {part.run.nunique()} of {len(members)} runs)")
    link, link_numbers = _outcome_link(runs, groups, group)
    numbers = {"group": group, "layer": layer, BN_VAR_RATIO: ratios,
               "momentum": momentum, "steps": trained, "initial_share_left": left,
               BN_INIT_SHARE: share, "input_variance": variance} | link_numbers
    consequence = (": inference normalizes with the wrong scale, which this lower validation is "
                   "consistent with." if link_numbers.get("worse") and link_numbers.get("significant")
                   else "; whether it costs accuracy these runs do not show."
                   if link_numbers.get("worse") else "." if link else "")
    lagging = share >= 1 - 1 / BN_RATIO_LIMIT if share is not None else left > LAG_SHARE
    return {"seen": seen, "link": link, "consequence": consequence, "numbers": numbers,
            "momentum": momentum, "trained": trained, "left": left, "share": share,
            "variance": variance, "lagging": lagging}


def _bn_brief(e):
    """The grouped view of RA210/RA211: the group and layer, the variance ratio seen and
    (for a lag) the share of the initial value; weight: how far the ratio is from 1."""
    ratios = list(e["numbers"][BN_VAR_RATIO].values())
    low, high = min(ratios), max(ratios)
    ratio = shown(low, 0.01) if shown(low, 0.01) == shown(high, 0.01) else f"{shown(low, 0.01)} to {shown(high, 0.01)}"
    brief = f"input variance {ratio}x the moving variance"
    if e["lagging"] and e["share"] is not None:
        brief += f", {e['share']:.0%} of it the initial value"
    return {"about": f"'{e['numbers']['group']}', layer {e['numbers']['layer']}", "brief": brief,
            "weight": float(max(abs(np.log(max(r, 1e-12))) for r in ratios))}


def _lag_finding(group, e):
    """RA210: the moving statistics have not caught up (their initial value still weighs)."""
    needed = steps_to_catch_up(e["momentum"], e["variance"])
    remedy = steps_to_catch_up(REMEDY_MOMENTUM, e["variance"])
    e["numbers"]["steps_needed"] = needed
    if e["share"] is not None:
        why = (f"After {e['trained']} training steps at momentum {e['momentum']:g}, {e['left']:.2g} "
               f"of the initial moving variance (1) is left, and that remnant is still "
               f"{e['share']:.0%} of the median channel's moving variance (bn_init_share): the "
               f"inputs' variances (about {number(e['variance'], 2)} now) are far below 1 and the "
               "moving variance has not caught up with them. It does (remnant under 1%) after "
               f"about {needed} steps")
    else:
        why = (f"After {e['trained']} training steps at momentum {e['momentum']:g}, {e['left']:.0%} "
               f"of the moving statistics is still their initial value; forgetting it to 1% takes "
               f"{needed} steps")
    text = (f"BatchNormalization statistics lag the data in '{group}': {e['seen']}. {why}."
            f"{e['link']}" + e["consequence"]
            + f" Remedies: BatchNormalization(momentum={REMEDY_MOMENTUM}) (catches up after "
            f"about {remedy} steps), train for {needed} steps or more, or re-estimate the moving "
            "statistics after training (run training batches through the model in training "
            "mode without weight updates, Dropout off).")
    return Finding("RA210", "batchnorm_lag", text, e["numbers"], NOTICE, **_bn_brief(e))


def _mismatch_finding(group, e, upstream):
    """RA211: the statistics do not fit, and not by their own lag."""
    e["numbers"]["after_lagging"] = upstream
    cause = (f" Its input passes through {', '.join(upstream)}, whose statistics lag (above): at "
             "inference that layer hands on a different scale than in training, and this "
             "one inherits it; fixing that lag fixes this too." if upstream else
             " The moving statistics average about the last "
             f"{round(1 / (1 - e['momentum']))} steps, so they trail an input that still changes, "
             "or the training batches differ from the inference data (augmentation, "
             "preprocessing, Dropout before BN).")
    remedies = (f" Remedy: fix the lag of {', '.join(upstream)}." if upstream else
                f" Remedies: BatchNormalization(momentum={REMEDY_MOMENTUM}) (averages about "
                f"{round(1 / (1 - REMEDY_MOMENTUM))} steps), re-estimate the moving statistics "
                "after training (run training batches through the model in training mode "
                "without weight updates, Dropout off), and check that validation data is "
                "preprocessed like training data.")
    text = (f"BatchNormalization statistics do not fit the data in '{group}': {e['seen']}. It is "
            "not its own lag: " + (f"the initial value is only {e['share']:.0%} of the median "
                                   "channel's moving variance (bn_init_share)"
                                   if e["share"] is not None else
                                   f"{e['left']:.1%} of the initial value is left")
            + f".{cause}{e['link']}" + e["consequence"] + remedies)
    return Finding("RA211", "batchnorm_mismatch", text, e["numbers"], NOTICE, **_bn_brief(e))


@finding_rule("RA212", order=70,
              summary='Dropout before BatchNormalization: the variance shift of Li et al. (2019), with remedies', evidence=(BN_DROPOUT_VAR_RATIO,),
              titles={"RA212": "Dropout before BN shifts its variance"})
def dropout_before_batchnorm(runs, groups):
    """RA212, the variance shift of Li et al. (2019): at the last audit a BN layer whose
    input variance with the upstream Dropout-like noise on is more than 1.10 times its
    inference variance (`bn_dropout_var_ratio`, pooled over channels). BN learns its
    moving variance from the noisy training input and meets the quieter inference input.
    Remedies (Li et al. 2019): move the Dropout after the last BN, or re-estimate BN's
    statistics with Dropout off. One finding per layer, naming the runs."""
    final = outcomes.final_layers(runs.shift, BN_DROPOUT_VAR_RATIO)
    flagged = final[final.value > DROPOUT_VAR_LIMIT]
    out = []
    for layer, values, total in per_layer(final, flagged, outcomes.run_names(runs)):
        amount, where = values_text(values, total)
        out.append(Finding(
            "RA212", "dropout_before_batchnorm",
            f"Dropout upstream of BatchNormalization layer {layer} makes the variance it sees in "
            f"training {amount} times the variance at inference (bn_dropout_var_ratio, more than "
            f"{DROPOUT_VAR_LIMIT}), in {where}: the variance shift of Li et al. (2019). Move that "
            "Dropout after the last BatchNormalization, or re-estimate BN's moving statistics "
            "on training batches with Dropout off after training.",
            {"layer": layer, "values": values, "limit": DROPOUT_VAR_LIMIT}, NOTICE,
            about=f"layer {layer}", brief=f"training variance {amount}x inference's "
            f"({len(values)} of {total} runs)", weight=max(values.values())))
    return out


@finding_rule("RA220", "RA221", order=80,
              summary='dead ReLU units, saturated sigmoid/tanh units, with remedies', evidence=(DEAD_FRAC, SAT_FRAC),
              titles={"RA220": "Dead ReLU units", "RA221": "Saturated sigmoid/tanh units"})
def dead_and_saturated(runs, groups):
    """RA220/RA221: layers with more than 10% dead ReLU units (`dead_frac`: units that
    output exactly zero on every probe sample; logged for ReLU-family outputs only) or
    more than 20% saturated sigmoid/tanh values (`sat_frac`) at the last audit; one
    finding per layer, naming the runs, with the usual remedies."""
    out = []
    names = outcomes.run_names(runs)
    for measure, limit, what, rule, remedy in (
            (DEAD_FRAC, DEAD_LIMIT, "dead ReLU units", "RA220",
             "Units that never fire get no gradient: lower the learning rate, use He "
             "initialization, put BatchNormalization before the ReLU, or use LeakyReLU/ELU."),
            (SAT_FRAC, SATURATED_LIMIT, "saturated values", "RA221",
             "Saturated sigmoid/tanh units pass almost no gradient: scale the inputs, put "
             "BatchNormalization before the activation, or use a ReLU-family activation.")):
        final = outcomes.final_layers(runs.activations, measure)
        final = final[final.layer != MODEL]
        flagged = final[final.value > limit]
        for layer, values, total in per_layer(final, flagged, names):
            amount, where = values_text(values, total, percent=True)
            out.append(Finding(
                rule, measure, f"Layer {layer} has {amount} {what} at the last audit (more than "
                f"{limit:.0%}) in {where}. {remedy}",
                {"layer": layer, "values": values, "limit": limit}, NOTICE, about=f"layer {layer}",
                brief=f"{amount} {what} ({len(values)} of {total} runs)", weight=max(values.values())))
    return out


@finding_rule("RA222", order=20,
              summary="NaN or infinite values in a layer's outputs, from the first audit where they appeared, with remedies", evidence=(NONFINITE_FRAC,),
              titles={"RA222": "NaN or infinite outputs"})
def nonfinite(runs, groups):
    """RA222: layers that produced NaN or infinite values (`nonfinite_frac` > 0) at any
    audit: the first audit where it happened and the largest fraction, per layer across
    runs. Their other measures are over the finite values only."""
    acts = runs.activations
    rows = acts[(acts.measure == NONFINITE_FRAC) & (acts.layer != MODEL) & (acts.value > 0)]
    names = outcomes.run_names(runs)
    out = []
    for layer in dict.fromkeys(rows.layer):
        part = rows[rows.layer == layer]
        first = part.sort_values(["epoch", "step"]).iloc[0]
        runs_hit = names_text(dict.fromkeys(names.get(r, r) for r in part.run))
        out.append(Finding(
            "RA222", "nonfinite", f"Layer {layer} produced NaN or infinite values: up to "
            f"{part.value.max():.2%} of its outputs, first at epoch {int(first.epoch)} "
            f"(runs: {runs_hit}). Its other measures count only the finite values. Lower the "
            "learning rate or clip gradients (clipnorm=1.0), and check the inputs for NaN.",
            dict(layer=layer, max=float(part.value.max()), first_epoch=int(first.epoch)),
            NOTICE, about=f"layer {layer}", brief=f"up to {part.value.max():.2%} of outputs, from "
            f"epoch {int(first.epoch)}", weight=float(part.value.max())))
    return out
