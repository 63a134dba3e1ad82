"""RA261: the Dropout x BatchNormalization interaction of a study.

"Do the two clash?" is a question about an interaction: the effect of Dropout with BN
minus its effect without BN, on the final outcome, from four groups alike but for Dropout
and BN (the same dropout rates, BN placement and other study levels). The estimate, its
95% interval and its p come from `statistics.interaction` (Welch-Satterthwaite), Holm-
corrected over the BN placements compared.
"""

import numpy as np

from regaudit.answer.levels import NOTICE, INFO
from regaudit.answer import outcomes
from regaudit.answer.claims import group_setups
from regaudit.answer.finding import Finding, finding_rule, number, p_text
from regaudit.answer.statistics import holm, interaction, level

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


@finding_rule("RA261", order=120,
              summary='a study\'s answer to "do Dropout and BatchNormalization clash?": Dropout\'s effect with BN minus its effect without, with its interval and Holm-adjusted p')
def dropout_batchnorm_interaction(runs, groups):
    """[RA261 per BN placement with four such groups of two runs or more each]."""
    measure, values, higher, _ = outcomes.outcome(runs)
    by = outcomes.by_group(values, groups)
    quads = [q for q in _quads(group_setups(runs, groups)) if all(len(by.get(g, ())) >= 2 for g in q[:4])]
    if not quads:
        return []
    tests = [interaction(by[norm], by[both], by[plain], by[drop]) for plain, drop, norm, both, _ in quads]
    adjusted = holm([t[3] for t in tests])
    out = []
    for (plain, drop, norm, both, placement), (estimate, low, high, p), p_holm in zip(quads, tests, adjusted):
        without = np.mean(by[drop]) - np.mean(by[plain])
        with_bn = np.mean(by[both]) - np.mean(by[norm])
        significant = p_holm < level()
        worse = (estimate < 0) == higher
        verdict = ("they clash: Dropout does less for the model with BN than without" if significant and worse
                   else "Dropout does more with BN than without" if significant
                   else "no detectable interaction")
        where = placement.replace("_", " ")
        text = (f"Dropout x BatchNormalization ({where}): Dropout changes {measure} by "
                f"{number(without)} without BN ('{plain}' to '{drop}') and by {number(with_bn)} "
                f"with it ('{norm}' to '{both}'); the difference of the two is {estimate:+.4g}, 95% "
                f"interval [{low:+.4g}, {high:+.4g}], Holm-adjusted {p_text(p_holm)}: {verdict}.")
        out.append(Finding(*RULE, text, {"measure": measure, "placement": placement, "estimate": estimate,
                                         "low": low, "high": high, "p": p, "p_holm": float(p_holm),
                                         "groups": [plain, drop, norm, both]},
                           NOTICE if significant else INFO))
    return out
