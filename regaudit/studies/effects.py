"""RA261: the Dropout x BatchNormalization interaction of a study.

"Do the two clash?" is a question about an interaction: the effect of Dropout with BN
minus its effect without BN, on the final outcome, from four groups alike but for Dropout
and BN (the same dropout rates, BN placement and other study levels). Each BN placement's
interaction is a contrast of the study's one linear model (`regaudit.answer.analysis`),
Holm-corrected with every other question of the study.
"""

from regaudit.answer.analysis import OUTCOME, Question, analyse, asks, contrast_text, model_text
from regaudit.answer.claim_contrasts import mean_of_interactions
from regaudit.answer.finding import Finding, finding_rule, number, p_text
from regaudit.answer.precision import interval
from regaudit.answer.levels import INFO, NOTICE
from regaudit.answer.statistics import level

RULE = ("RA261", "dropout_batchnorm_interaction")


def _quads(setups):
    """[(no Dropout no BN, Dropout no BN, BN no Dropout, both, BN placement)]."""
    def alike(a, b):
        return a["others"] == b["others"]

    out = []
    for plain, sp in setups.items():
        if sp["dropout"] or sp["batchnorm"]:
            continue
        for drop, sd in setups.items():
            if not sd["dropout"] or sd["batchnorm"] or not alike(sd, sp):
                continue
            for norm, sn in setups.items():
                if sn["dropout"] or not sn["batchnorm"] or not alike(sn, sp):
                    continue
                for both, sb in setups.items():
                    if sb["dropout"] and sb["batchnorm"] and alike(sb, sp) and \
                            sb["rates"] == sd["rates"] and sb["placement"] == sn["placement"]:
                        out.append((plain, drop, norm, both, sn["placement"]))
    return out


def _by_placement(setups):
    """{placement: [(plain, drop, norm, both)]} of the study's four-group sets."""
    out = {}
    for plain, drop, norm, both, placement in _quads(setups):
        out.setdefault(placement, []).append((plain, drop, norm, both))
    return out


@asks
def interaction_questions(setups):
    """Per BN placement: (both - BN only) - (Dropout only - neither), averaged over the sets."""
    return [Question(f"{RULE[0]}:{placement}", OUTCOME,
                     mean_of_interactions([(norm, both, plain, drop) for plain, drop, norm, both in quads]))
            for placement, quads in _by_placement(setups).items()]


@finding_rule("RA261", order=120,
              summary='a study\'s answer to "do Dropout and BatchNormalization clash?": Dropout\'s effect with BN minus its effect without, with its interval and Holm-adjusted p',
              titles={"RA261": "Dropout x BN interaction"})
def dropout_batchnorm_interaction(runs, groups):
    """[RA261 per BN placement whose four groups the study's model can compare]."""
    analysis = analyse(runs, groups)
    measure, _, higher, _, margin_ = analysis.outcome(OUTCOME)
    out = []
    for placement, quads in _by_placement(analysis.setups).items():
        found = analysis.get(f"{RULE[0]}:{placement}")
        if found is None:
            continue
        plain, drop, norm, both = quads[0]
        without = analysis.mean(OUTCOME, drop) - analysis.mean(OUTCOME, plain)
        with_bn = analysis.mean(OUTCOME, both) - analysis.mean(OUTCOME, norm)
        decided = found.decided(level())
        worse = (found.estimate < 0) == higher
        verdict = ("they clash: Dropout does less for the model with BN than without"
                   if decided == "difference" and worse else
                   "Dropout does more with BN than without" if decided == "difference" else
                   f"no interaction worth the name (within +-{margin_:g}, equivalence Holm-adjusted "
                   f"{p_text(found.p_equal_holm)})" if decided == "negligible" else
                   "no detectable interaction")
        where = placement.replace("_", " ")
        text = (f"Dropout x BatchNormalization ({where}): Dropout changes {measure} by "
                f"{number(without)} without BN ('{plain}' to '{drop}') and by {number(with_bn)} "
                f"with it ('{norm}' to '{both}'); the difference of the two is {contrast_text(found)} "
                f"({model_text(analysis.model(OUTCOME))}): {verdict}.")
        out.append(Finding(*RULE, text, found.as_numbers() | {
            "measure": measure, "placement": placement, "groups": [plain, drop, norm, both],
            "verdict": decided or "not shown", "family": analysis.family},
            NOTICE if decided == "difference" else INFO, about=f"BN {where}",
            brief=f"{verdict.split(' (')[0]}: {interval(found.estimate, found.low, found.high, signed=True)}",
            weight=abs(found.estimate)))
    return out
