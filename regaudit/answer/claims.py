"""The seed article's claims, put to the test on the user's runs.

The article: "How do dropout and batch normalization layers affect a DNN model's
performance?" (2025-01-30), in `shared/seed/` (README: "The article"). Each claim RA251-
RA256 is a contrast of the runs' one linear model (`regaudit.answer.analysis`): the groups
alike but for the claim's factor compared, averaged over the settings that hold both (a
main effect over the design, so every run of the study informs it), Holm-corrected with
every other question of the study. A verdict is "supported" or "contradicted" when the
contrast differs from 0, "negligible" when an equivalence test puts it within the practical
margin, otherwise "not shown" with what these runs could detect. RA257 (the ensemble) is a
paired test of each run's own predictions (McNemar). Groups are compared by their
regularization setup (`regaudit.answer.outcomes.setups`), a group's setup being its runs'
common setup.
"""

from dataclasses import dataclass

import numpy as np

from regaudit.answer.levels import NOTICE, INFO
from regaudit.measures.ensemble import DET_ONLY_CORRECT, MC_ONLY_CORRECT, PROBE_SAMPLES
from regaudit.answer import outcomes
from regaudit.answer.analysis import (
    FIRST_LOSS, GAP, OUTCOME, Question, analyse, asks, contrast_text, model_text,
)
from regaudit.answer.claim_contrasts import (
    RATE_RANGE, combined_contrast, pairs_of, placement_contrast, range_contrast, rate_contrast,
)
from regaudit.answer.contrasts import span_of
from regaudit.answer.finding import Finding, finding_rule, number, p_text
from regaudit.answer.precision import interval
from regaudit.answer.statistics import holm, level, mcnemar_exact

ARTICLE = ("\"How do dropout and batch normalization layers affect a DNN model's "
           "performance?\" (2025-01-30)")
#: The weight-scaled network "stands for" the ensemble when the 95% interval of the
#: paired accuracy difference lies within +-ENSEMBLE_MARGIN.
ENSEMBLE_MARGIN = 0.01
#: The ids of the claims' findings (RA251-RA257) start with this.
CLAIM_PREFIX = "RA25"


def _finding(claim_id, rule, claim, verdict, evidence, numbers):
    text = f"Claim \"{claim}\": {verdict}. {evidence}"
    effect, value = "", numbers.get("estimate", numbers.get("gain"))
    if all(isinstance(v, float) for v in (value, numbers.get("low"), numbers.get("high"))):
        effect = (f"{numbers.get('measure', 'Monte-Carlo minus weight-scaled accuracy')} "
                  f"{interval(value, numbers['low'], numbers['high'], signed=True)}")
        held = numbers.get("p_equal_holm") if verdict == "negligible" else numbers.get("p_holm")
        if verdict != "not shown" and isinstance(held, float):
            # the verdict's own test: Holm's step-down can decide where the simultaneous
            # interval, which is wider, still reaches past 0
            effect += f", Holm {p_text(held)}"
    return Finding(claim_id, rule, text, {"claim": claim, "verdict": verdict} | numbers,
                   NOTICE if verdict == "contradicted" else INFO, about=claim, brief=effect)


@dataclass(frozen=True)
class Claim:
    """One of the article's claims as a contrast: its id and rule, its words, the outcome
    it is judged on, `contrast(setups)` -> ({group: weight}, [what is compared]), whether a
    lower contrast supports it (else a better outcome does), and what to train without it."""

    id: str
    rule: str
    words: str
    kind: str
    contrast: object
    lower_supports: bool
    missing: str


CONTRAST_CLAIMS = (
    Claim("RA251", "claim_dropout_overfitting", "Dropout reduces overfitting", GAP, pairs_of("dropout"),
          True, "train the same model with and without Dropout, 3 seeds or more each"),
    Claim("RA252", "claim_batchnorm_speed", "BatchNormalization accelerates training", FIRST_LOSS,
          pairs_of("batchnorm"), True, "train the same model with and without BN, 3 seeds or more each"),
    Claim("RA253", "claim_batchnorm_learning_rate", "BatchNormalization allows higher learning rates",
          OUTCOME, rate_contrast, False,
          "it needs the same model with and without BN at its learning rate and at a higher one; run "
          "`regaudit study` (its article design trains x3 and x10 with and without BN)"),
    Claim("RA254", "claim_batchnorm_placement",
          "BatchNormalization before the activation works better than after it", OUTCOME,
          placement_contrast, False,
          "train a variant with Conv2D(activation=None), BatchNormalization(), Activation('relu') next "
          "to the article's BN after Conv2D(..., activation='relu')"),
    Claim("RA255", "claim_dropout_rates",
          f"Dropout rates between {RATE_RANGE[0]} and {RATE_RANGE[1]} work best", OUTCOME,
          range_contrast, False, "train the same model at rates such as 0.1, 0.5 and 0.8, 3 seeds each"),
    Claim("RA256", "claim_combined", "Dropout and BatchNormalization combined improve the model", OUTCOME,
          combined_contrast, False, "train Dropout only, BN only and both, 3 seeds or more each"),
)


@asks
def claim_questions(setups):
    """The contrasts of the article's claims RA251-RA256 these groups' setups hold."""
    out = []
    for claim in CONTRAST_CLAIMS:
        weights, _ = claim.contrast(setups)
        if weights:
            out.append(Question(claim.id, claim.kind, weights))
    return out


def _side(analysis, kind, groups):
    means = [analysis.mean(kind, g) for g in groups]
    names = "', '".join(groups)
    return f"'{names}' {number(float(np.mean(means)))}"


def _compared(analysis, kind, compared):
    parts = []
    for first, second, context in compared[:4]:
        where = f"{context}: " if context else ""
        parts.append(f"{where}{_side(analysis, kind, first)} against {_side(analysis, kind, second)}")
    more = f" and {len(compared) - 4} more" if len(compared) > 4 else ""
    return "; ".join(parts) + more


def _against(model, compared, estimate):
    """(first, second, context, (estimate, low, high)) of the first compared setting whose
    own 95% interval lies wholly on the other side of the averaged contrast, else None. A
    guard that only withdraws a verdict, so it adds no false claim."""
    if len(compared) < 2:
        return None
    for first, second, context in compared:
        weights = {g: 1 / len(first) for g in first}
        for group in second:
            weights[group] = weights.get(group, 0.0) - 1 / len(second)
        own = model.contrast(weights)
        if own is not None and (own.high < 0 < estimate or own.low > 0 > estimate):
            return "', '".join(first), "', '".join(second), context, (own.estimate, own.low, own.high)
    return None


def judged(claim, runs, groups, setups):
    """The Finding of a claim: its contrast's verdict, from the study's one analysis."""
    weights, compared = claim.contrast(setups)
    if not weights:
        return _finding(claim.id, claim.rule, claim.words, "not shown",
                        f"These runs hold no groups to compare for it; {claim.missing}.", {})
    analysis = analyse(runs, groups)
    measure, _, higher, _, margin_ = analysis.outcome(claim.kind)
    found = analysis.get(claim.id)
    if analysis.model(claim.kind) is None:
        return _finding(claim.id, claim.rule, claim.words, "not shown",
                        f"These runs logged no {measure} to judge it on; {claim.missing}.", {})
    if found is None:
        return _finding(claim.id, claim.rule, claim.words, "not shown",
                        f"{measure}: the groups it compares ({_compared(analysis, claim.kind, compared)}) leave "
                        "the study no degrees of freedom to test with; train each with 2 seeds or more.",
                        {"measure": measure})
    alpha = level()
    decided = found.decided(alpha)
    supports = (found.estimate < 0) if claim.lower_supports else ((found.estimate > 0) == higher)
    verdict = ({"difference": "supported" if supports else "contradicted", "negligible": "negligible"}
               .get(decided, "not shown"))
    evidence = (f"{_compared(analysis, claim.kind, compared)}: {measure} {contrast_text(found)}, "
                f"{model_text(analysis.model(claim.kind))}")
    against = _against(analysis.model(claim.kind), compared, found.estimate) if verdict != "not shown" else None
    if against:  # a main effect is a claim about every setting only when none goes the other way
        first, second, context, estimate = against
        verdict = "not shown"
        evidence += (f"; but not in every setting: {context + ': ' if context else ''}'{first}' against "
                     f"'{second}' goes the other way ({estimate[0]:+.3g}, 95% interval [{estimate[1]:+.3g}, "
                     f"{estimate[2]:+.3g}]), so the claim does not hold across this model's settings")
    elif verdict == "negligible":
        evidence += (f"; within +-{margin_:g} (equivalence test, Holm-adjusted "
                     f"{p_text(found.p_equal_holm)}), so too small to matter")
    elif verdict == "not shown":
        within_words = (f" nor shown within +-{margin_:g} (equivalence Holm-adjusted "
                        f"{p_text(found.p_equal_holm)})") if np.isfinite(found.p_equal_holm) else ""
        detectable = found.detectable(alpha, analysis.family)
        reach = (f"these runs detect {number(detectable, 3)} or more with 80% power"
                 if detectable < span_of(found.cells, analysis.outcome(claim.kind)[3]) else
                 "these runs cannot detect any difference in it (more seeds would)")
        evidence += f"; neither a difference{within_words}: {reach}"
    numbers = found.as_numbers() | {"measure": measure, "family": analysis.family,
                                    "compared": [[a, b, c] for a, b, c in compared]}
    return _finding(claim.id, claim.rule, claim.words, verdict, evidence + ".", numbers)


def dropout_overfitting(runs, groups, setups):
    """RA251 "Dropout reduces overfitting": the final generalization gap of groups with
    Dropout minus that of the group with the same BatchNormalization and no Dropout,
    averaged over such pairs; supported when it is significantly negative."""
    return judged(CONTRAST_CLAIMS[0], runs, groups, setups)


def batchnorm_speed(runs, groups, setups):
    """RA252 "BatchNormalization accelerates training": the training loss after the first
    epoch of groups with BN minus that of the group with the same Dropout and no BN,
    averaged over such pairs; supported when it is significantly negative."""
    return judged(CONTRAST_CLAIMS[1], runs, groups, setups)


def batchnorm_learning_rate(runs, groups, setups):
    """RA253 "BatchNormalization allows higher learning rates": the interaction (outcome at
    the highest rate factor trained minus at the given rate, with BN, minus the same
    without BN), averaged over the BN placements trained; supported when BN loses
    significantly less."""
    return judged(CONTRAST_CLAIMS[2], runs, groups, setups)


def batchnorm_placement(runs, groups, setups):
    """RA254 "BN before the activation works better than after": the groups whose BN sits
    before the activation minus those whose BN sits after, within groups alike in dropout
    rates and a study's other levels, averaged over those contexts."""
    return judged(CONTRAST_CLAIMS[3], runs, groups, setups)


def dropout_rates(runs, groups, setups):
    """RA255 "rates between 0.2 and 0.7 work best": Dropout groups whose rates all lie in
    [0.2, 0.7] minus Dropout groups with a rate outside, within groups alike in BN, its
    placement and a study's other levels, averaged over those contexts."""
    return judged(CONTRAST_CLAIMS[4], runs, groups, setups)


def combined(runs, groups, setups):
    """RA256 "the two combined improve the model": the groups with both Dropout and BN
    minus the Dropout-only and BN-only groups, averaged over the pairs."""
    return judged(CONTRAST_CLAIMS[5], runs, groups, setups)


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
    setups = analyse(runs, groups).setups  # the study's one analysis holds them already
    return [claim(runs, groups, setups) for claim in CLAIMS]
