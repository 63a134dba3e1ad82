"""The seed article's claims, put to the test on the user's runs.

The article: "How do dropout and batch normalization layers affect a DNN model's
performance?" (2025-01-30), in `shared/seed/` (README: "The article"). Each claim gets a
verdict on the runs at hand: "supported" or "contradicted" only when a Holm-corrected
test (or, for the ensemble claim, an equivalence interval) says so; otherwise "not shown",
with what would show it. Groups are compared by their regularization setup
(`regaudit.answer.outcomes.setups`), a group's setup being its runs' common setup.
"""

import numpy as np

from regaudit.answer.levels import NOTICE, INFO
from regaudit.measures.ensemble import DET_ONLY_CORRECT, MC_ONLY_CORRECT, PROBE_SAMPLES
from regaudit.answer import outcomes
from regaudit.answer.finding import Finding, finding_rule, number, p_text, seeds_text
from regaudit.schema import MODEL
from regaudit.answer.statistics import compare_groups, holm, interaction, level, mcnemar_exact

ARTICLE = ("\"How do dropout and batch normalization layers affect a DNN model's "
           "performance?\" (2025-01-30)")
#: The weight-scaled network "stands for" the ensemble when the 95% interval of the
#: paired accuracy difference lies within +-ENSEMBLE_MARGIN.
ENSEMBLE_MARGIN = 0.01
#: The ids of the claims' findings (RA251-RA257) start with this.
CLAIM_PREFIX = "RA25"
#: The article's range of good dropout rates.
RATE_RANGE = (0.2, 0.7)


def group_setups(runs, groups):
    """{group: setup dict} for the groups whose runs share one setup."""
    setup = outcomes.setups(runs)
    out = {}
    for group in dict.fromkeys(groups.values()):
        members = [setup[r] for r, g in groups.items() if g == group and r in setup]
        keys = {(s["dropout"], s["batchnorm"], s["placement"], tuple(s["rates"]), s["others"])
                for s in members}
        if len(keys) == 1:
            out[group] = members[0]
    return out


def _verdict(claim_id, rule, claim, pairs, values, measure, lower_supports, missing):
    """A claim judged on `pairs` [(group that should win, group it should beat)] of
    `values` {group: [values]}: supported when every testable pair is significant in
    the claimed direction, contradicted when one is significant against it."""
    comparisons = {frozenset((c.high, c.low)): c for c in compare_groups(values, pairs)}
    tested = [(a, b, comparisons[frozenset((a, b))]) for a, b in pairs
              if frozenset((a, b)) in comparisons]
    if not tested:
        return _finding(claim_id, rule, claim, "not shown", missing, {})
    parts, verdicts = [], []
    for winner, loser, c in tested:
        claimed = (c.low == winner) if lower_supports else (c.high == winner)
        means = f"{number(np.mean(values[winner]))} against {number(np.mean(values[loser]))}"
        if c.significant:
            verdicts.append("supported" if claimed else "contradicted")
            parts.append(f"'{winner}' against '{loser}': {measure} {means}, Holm-adjusted "
                         f"{p_text(c.p_holm)}")
        else:
            verdicts.append("not shown")
            parts.append(f"'{winner}' against '{loser}': {measure} {means}, no detectable "
                         f"difference (Holm-adjusted {p_text(c.p_holm)}; the observed difference "
                         f"would need {seeds_text(c.seeds)} seeds per group)")
    verdict = ("contradicted" if "contradicted" in verdicts else
               "supported" if all(v == "supported" for v in verdicts) else "not shown")
    numbers = {"comparisons": [c.as_numbers() for _, _, c in tested], "measure": measure}
    return _finding(claim_id, rule, claim, verdict, "; ".join(parts) + ".", numbers)


def _finding(claim_id, rule, claim, verdict, evidence, numbers):
    text = f"Claim \"{claim}\": {verdict}. {evidence}"
    return Finding(claim_id, rule, text, {"claim": claim, "verdict": verdict} | numbers,
                   NOTICE if verdict == "contradicted" else INFO)


def _pairs(setups, with_key):
    """[(group with `with_key`, the group without it and otherwise the same setup)]: the
    same other regularizer, the same study levels (learning rate, ...), and for Dropout
    the same BN placement, for BN the same dropout rates."""
    out = []
    other = "batchnorm" if with_key == "dropout" else "dropout"
    same = "placement" if with_key == "dropout" else "rates"
    for a, sa in setups.items():
        for b, sb in setups.items():
            if sa[with_key] and not sb[with_key] and sa[other] == sb[other] and \
                    sa["others"] == sb["others"] and sa[same] == sb[same]:
                out.append((a, b))
    return out


def dropout_overfitting(runs, groups, setups):
    """RA251 "Dropout reduces overfitting": each group with Dropout has a smaller final
    generalization gap than the group with the same BatchNormalization and no Dropout."""
    name, gaps = outcomes.final_gap(runs)
    pairs = _pairs(setups, "dropout")
    missing = ("These runs hold no pair of setups that differ only by Dropout" if not pairs
               else "Each setup needs two seeds or more") + "; train the same model with and without Dropout, 3 seeds or more each."
    return _verdict("RA251", "claim_dropout_overfitting", "Dropout reduces overfitting", pairs,
                    outcomes.by_group(gaps, groups), name or "generalization gap", True, missing)


def first_epoch_loss(runs):
    """{run: training loss after the first epoch}: how far one epoch gets."""
    history = runs.history
    loss = history[(history.measure == "loss") & (history.layer == MODEL)]
    first = loss[loss.epoch == loss.run.map(loss.groupby("run")["epoch"].min())]
    return {r: float(v) for r, v in zip(first.run, first.value) if np.isfinite(v)}


def batchnorm_speed(runs, groups, setups):
    """RA252 "BatchNormalization accelerates training": each group with BN has a lower
    training loss after the first epoch than the group with the same Dropout and no BN."""
    pairs = _pairs(setups, "batchnorm")
    missing = ("These runs hold no pair of setups that differ only by BatchNormalization" if not pairs
               else "Each setup needs two seeds or more") + "; train the same model with and without BN, 3 seeds or more each."
    return _verdict("RA252", "claim_batchnorm_speed", "BatchNormalization accelerates training",
                    pairs, outcomes.by_group(first_epoch_loss(runs), groups),
                    "mean training loss in epoch 1", True, missing)


def _rate_quads(setups):
    """[(lr factor, BN at 1, BN at factor, no BN at 1, no BN at factor)]: groups alike but
    for BN and the study's learning-rate factor (the same dropout rates and other levels)."""
    def key(s):
        return (s["dropout"], tuple(s["rates"]), tuple(kv for kv in s["others"] if kv[0] != "lr"))

    out = []
    for base_bn, sb in setups.items():
        if not sb["batchnorm"] or sb["lr"] != 1.0:
            continue
        for base_plain, sp in setups.items():
            if sp["batchnorm"] or sp["lr"] != 1.0 or key(sp) != key(sb):
                continue
            for high_bn, hb in setups.items():
                if not hb["batchnorm"] or hb["lr"] == 1.0 or key(hb) != key(sb) or \
                        hb["placement"] != sb["placement"]:
                    continue
                for high_plain, hp in setups.items():
                    if not hp["batchnorm"] and hp["lr"] == hb["lr"] and key(hp) == key(sb):
                        out.append((hb["lr"], base_bn, high_bn, base_plain, high_plain))
    return out


def batchnorm_learning_rate(runs, groups, setups):
    """RA253 "BatchNormalization allows higher learning rates": where a study trained the
    same model with and without BN at its learning rate and at a higher factor, the
    interaction (outcome at the higher rate minus at the given rate, with BN, minus the
    same without BN; Welch-Satterthwaite t, Holm over the factors) is the test: supported
    when BN loses significantly less, contradicted when it loses significantly more."""
    measure, values, higher, _ = outcomes.outcome(runs)
    by = outcomes.by_group(values, groups)
    claim = "BatchNormalization allows higher learning rates"
    quads = [q for q in _rate_quads(setups) if all(len(by.get(g, ())) >= 2 for g in q[1:])]
    if not quads:
        factors = sorted({s["lr"] for s in setups.values()})
        seen = ("these runs train at one learning rate" if len(factors) < 2 else
                f"these runs have learning-rate factors {', '.join(f'{f:g}' for f in factors)} but not "
                "with and without BN alike, with two seeds or more each")
        return _finding("RA253", "claim_batchnorm_learning_rate", claim, "not shown",
                        f"It needs the same model with and without BN at its learning rate and at a "
                        f"higher one; {seen}. Run `regaudit study` (its article design trains x3 and "
                        "x10 with and without BN).", {"factors": factors})
    tests = [(q, interaction(*(by[g] for g in q[1:]))) for q in quads]
    adjusted = holm([t[3] for _, t in tests])
    sign = 1 if higher else -1
    parts, verdicts, numbers = [], [], []
    for ((factor, bn1, bnf, p1, pf), (estimate, low, high, p)), p_holm in zip(tests, adjusted):
        significant = p_holm < level()
        verdicts.append(("supported" if sign * estimate > 0 else "contradicted") if significant else "not shown")
        parts.append(f"x{factor:g}: {measure} changes by {number(np.mean(by[bnf]) - np.mean(by[bn1]))} "
                     f"with BN ('{bn1}' to '{bnf}') and {number(np.mean(by[pf]) - np.mean(by[p1]))} "
                     f"without ('{p1}' to '{pf}'); difference {estimate:+.4g}, 95% interval "
                     f"[{low:+.4g}, {high:+.4g}], Holm-adjusted {p_text(p_holm)}")
        numbers.append({"factor": factor, "estimate": estimate, "low": low, "high": high,
                        "p": p, "p_holm": float(p_holm)})
    verdict = ("contradicted" if "contradicted" in verdicts else
               "supported" if "supported" in verdicts else "not shown")
    return _finding("RA253", "claim_batchnorm_learning_rate", claim, verdict,
                    "; ".join(parts) + ".", {"interactions": numbers, "measure": measure})


def batchnorm_placement(runs, groups, setups):
    """RA254 "BN before the activation works better than after": runs whose BN layers all
    sit before their activation against runs whose BN layers all sit after, on the
    final outcome, compared only within runs alike in dropout rates and a study's other
    levels; not shown unless both placements were trained."""
    measure, values, higher, _ = outcomes.outcome(runs)
    placement = outcomes.tag_values(runs, "batchnorm_placement")
    by_place = outcomes.by_group(values, {r: p for r, p in placement.items()
                                          if p in ("before_activation", "after_activation")})
    claim = "BatchNormalization before the activation works better than after it"
    if len(by_place) < 2:
        words = {"before_activation": "puts BatchNormalization before the activation",
                 "after_activation": "puts BatchNormalization after the activation"}
        where = f"Every BN run here {words[next(iter(by_place))]}" if by_place else \
            "No run here has BatchNormalization with a clear placement"
        return _finding("RA254", "claim_batchnorm_placement", claim, "not shown",
                        f"{where} (the article's own Examples 2 and 3 put "
                        "BN after Conv2D(..., activation='relu')); train a variant with "
                        "Conv2D(activation=None), BatchNormalization(), Activation('relu').",
                        {"placements": list(by_place)})
    labelled, pairs = _within(values, outcomes.setups(runs), placement.get, _rates_context,
                              ("before_activation", "after_activation"))
    return _verdict("RA254", "claim_batchnorm_placement", claim, pairs, labelled, measure, not higher,
                    "Each placement needs two seeds or more, with the same Dropout and other levels.")


def _rates_context(s):
    """What else a BN placement comparison holds equal: the dropout rates, a study's levels."""
    rates = ",".join(f"{r:g}" for r in s["rates"]) or "none"
    return (f"dropout {rates}" + "".join(f", {k}={v}" for k, v in s["others"]))


def _bn_context(s):
    """What else a dropout-rate comparison holds equal: BN and its placement, a study's levels."""
    bn = "no BN" if not s["batchnorm"] else f"BN {s['placement'].replace('_activation', '')}"
    return bn + "".join(f", {k}={v}" for k, v in s["others"])


def _within(values, setup, level_of, context_of, levels):
    """({label: [values]}, [(first level's label, second's)]): the runs compared level
    against level only within a context (the rest of their setup) that holds both, so no
    other difference rides along; labels carry the context when there are several."""
    cells = {}
    for run, value in values.items():
        level = level_of(run) if run in setup else None
        if level in levels:
            cells.setdefault(context_of(setup[run]), {}).setdefault(level, []).append(value)
    both = {c: by for c, by in cells.items() if all(level in by for level in levels)}
    label = (lambda level, context: level) if len(both) == 1 else \
        (lambda level, context: f"{level} ({context})")
    labelled, pairs = {}, []
    for context, by in both.items():
        for level in levels:
            labelled[label(level, context)] = by[level]
        pairs.append(tuple(label(level, context) for level in levels))
    return labelled, pairs


def dropout_rates(runs, groups, setups):
    """RA255 "rates between 0.2 and 0.7 work best": Dropout runs whose rates all lie in
    [0.2, 0.7] against Dropout runs with a rate outside, on the final outcome, compared
    only within runs alike in BN, its placement and a study's other levels."""
    measure, values, higher, _ = outcomes.outcome(runs)
    setup = outcomes.setups(runs)
    inside = {r: ("inside" if all(RATE_RANGE[0] <= x <= RATE_RANGE[1] for x in s["rates"] if x > 0)
                  else "outside") for r, s in setup.items() if s["dropout"]}
    by_range = outcomes.by_group(values, inside)
    claim = f"Dropout rates between {RATE_RANGE[0]} and {RATE_RANGE[1]} work best"
    if len(by_range) < 2:
        rates = sorted({x for r in inside for x in setup[r]["rates"] if x > 0})
        listed = " and ".join(f"{x:g}" for x in rates)
        seen = ("No run here has Dropout" if not rates else
                f"Every Dropout run here uses rate{'s' if len(rates) > 1 else ''} {listed}, "
                f"{'all ' if len(rates) > 1 else ''}{'inside' if 'inside' in by_range else 'outside'} "
                "that range")
        return _finding("RA255", "claim_dropout_rates", claim, "not shown",
                        seen + "; train the same model at rates such as 0.1, 0.5 and 0.8, 3 seeds "
                        "each.", {"rates": rates})
    labelled, pairs = _within(values, setup, inside.get, _bn_context, ("inside", "outside"))
    return _verdict("RA255", "claim_dropout_rates", claim, pairs, labelled, measure, not higher,
                    "Each range needs two seeds or more, with the same BN and other levels.")


def combined(runs, groups, setups):
    """RA256 "the two combined improve the model": the group with both Dropout and BN has
    a better final outcome than the Dropout-only and the BN-only groups."""
    measure, values, higher, _ = outcomes.outcome(runs)
    both = [g for g, s in setups.items() if s["dropout"] and s["batchnorm"]]
    singles = [g for g, s in setups.items() if s["dropout"] != s["batchnorm"]]
    pairs = [(b, s) for b in both for s in singles]
    missing = ("These runs lack a group with both and a group with only one of them" if not pairs
               else "Each setup needs two seeds or more") + "; train Dropout only, BN only and both, 3 seeds or more each."
    return _verdict("RA256", "claim_combined", "Dropout and BatchNormalization combined improve the model",
                    pairs, outcomes.by_group(values, groups), measure, not higher, missing)


def weight_scaling(runs, groups, setups):
    """RA257 "the weight-scaled network stands for the ensemble's average": contradicted
    when the exact McNemar test (Holm over runs) finds a run where Monte-Carlo dropout and
    the weight-scaled network differ; supported when none does and the 95% interval of the
    pooled paired accuracy difference lies within +-0.01; else not shown."""
    ens = runs.ensemble
    b, c = outcomes.final(ens, DET_ONLY_CORRECT), outcomes.final(ens, MC_ONLY_CORRECT)
    n = outcomes.final(ens, PROBE_SAMPLES)
    tested = [r for r in b if r in c and r in n and n[r] > 0]
    claim = "The weight-scaled network stands for the dropout ensemble's average"
    if not tested:
        return _finding("RA257", "claim_weight_scaling", claim, "not shown",
                        "No run here has the paired counts McNemar's test needs: Dropout with "
                        "a labelled probe and one prediction per sample (runs older than the "
                        "counts and per-position heads, whose positions are not independent, "
                        "have none); train a Dropout model with validation data.", {})
    adjusted = holm([mcnemar_exact(b[r], c[r]) for r in tested])
    total = sum(n[r] for r in tested)
    gain = sum(c[r] - b[r] for r in tested) / total
    var = (sum(b[r] + c[r] for r in tested) / total - gain**2) / total
    half = 1.96 * np.sqrt(max(var, 0.0))
    numbers = {"runs": len(tested), "n": int(total), "gain": gain, "low": gain - half,
               "high": gain + half, "p_holm_min": float(min(adjusted)), "margin": ENSEMBLE_MARGIN}
    evidence = (f"Over {len(tested)} run(s) and {int(total)} probe predictions Monte-Carlo dropout "
                f"minus weight-scaled accuracy is {gain:+.4f}, 95% interval [{gain - half:+.4f}, "
                f"{gain + half:+.4f}]; smallest Holm-adjusted McNemar {p_text(min(adjusted))}")
    if min(adjusted) < level():
        return _finding("RA257", "claim_weight_scaling", claim, "contradicted",
                        evidence + ": in at least one run they differ.", numbers)
    if -ENSEMBLE_MARGIN < gain - half and gain + half < ENSEMBLE_MARGIN:
        return _finding("RA257", "claim_weight_scaling", claim, "supported",
                        evidence + f", within +-{ENSEMBLE_MARGIN}.", numbers)
    return _finding("RA257", "claim_weight_scaling", claim, "not shown",
                    evidence + f": too wide to show agreement within +-{ENSEMBLE_MARGIN}; a "
                    "larger probe (ensemble_probe_size=) or more runs would narrow it.", numbers)


CLAIMS = (dropout_overfitting, batchnorm_speed, batchnorm_learning_rate, batchnorm_placement,
          dropout_rates, combined, weight_scaling)


@finding_rule("RA251", "RA252", "RA253", "RA254", "RA255", "RA256", "RA257", order=110,
              summary="the seed article's claims, each judged on your runs")
def claims(runs, groups):
    """RA251-RA257: a verdict for each of the article's claims (none without history)."""
    if not len(runs.history):
        return []
    setups = group_setups(runs, groups)
    return [claim(runs, groups, setups) for claim in CLAIMS]
