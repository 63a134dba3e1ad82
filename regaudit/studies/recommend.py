"""RA260: one recommendation for this model, backed by its test.

Every variant of a study is compared with the model as given on the final outcome
(validation accuracy, else validation loss: `regaudit.answer.outcomes.outcome`), each as a
contrast of the study's one linear model (`regaudit.answer.analysis`), Holm-corrected
with every other question of the study. The recommendation is the variant with the
largest improvement among the significant ones, stated with its difference, its
simultaneous 95% interval (Bonferroni over the family, within the outcome's bounds) and
its Holm-adjusted p. When none is better it says to keep the model, naming the variants
shown negligible (within the practical margin) and those detectably worse, and the
smallest difference these seeds could detect (or that they cannot detect any).
"""

import numpy as np

from regaudit.answer.analysis import OUTCOME, Question, analyse, asks, confidence_text, model_text
from regaudit.answer.finding import Finding, finding_rule, number, p_text
from regaudit.answer.levels import INFO, NOTICE
from regaudit.answer.statistics import ALPHA, level
from regaudit.answer.precision import interval
from regaudit.studies.design import GIVEN, action

RULE = ("RA260", "study_recommendation")


def key_of(variant):
    return f"{RULE[0]}:{variant}"


@asks
def variant_questions(setups):
    """Each variant against the model as given, when the groups are a study's variants."""
    variants = list(setups)
    if GIVEN not in variants:
        return []
    return [Question(key_of(v), OUTCOME, {v: 1.0, GIVEN: -1.0}, True) for v in variants if v != GIVEN]


def _look():
    """How the level was chosen, when a sequential look set it below ALPHA."""
    if level() >= ALPHA:
        return ""
    return f", tested at {level():.3g}, this look's share of {ALPHA:g} in the sequential plan"


def given_remedy(runs, groups):
    """(before, after, runs): the model as given's validation-probe accuracy before and
    after its BN statistics were re-estimated (RA213), when that was measured and raised
    it; else None."""
    from regaudit.answer.remedy_findings import remedy_pairs

    pairs = [p for run, p in remedy_pairs(runs, "accuracy").items() if groups.get(run) == GIVEN]
    if not pairs:
        return None
    before, after = np.mean(pairs, axis=0)
    return (float(before), float(after), len(pairs)) if after > before else None


def _given_remedy(runs, groups):
    """A sentence on the model as given with its BN statistics re-estimated (RA213), when
    that was measured and raised its validation-probe accuracy; else ""."""
    from regaudit.answer.remedy_findings import RULE as REMEDY

    remedy = given_remedy(runs, groups)
    if remedy is None:
        return ""
    before, after, count = remedy
    return (f" With its BatchNormalization statistics re-estimated after training, the model as "
            f"given scores {number(after)} instead of {number(before)} on the validation probe "
            f"({REMEDY[0]}, {count} runs): try that remedy before changing the architecture.")


def given_levels(setups):
    """The model as given's own levels in a design's words ({"dropout": rate, "bn":
    placement}), where its setup says them; {} otherwise."""
    setup = setups.get(GIVEN)
    if not setup:
        return {}
    out = {"bn": setup["placement"] if setup["batchnorm"] else "none"}
    rates = set(setup["rates"]) if setup["dropout"] else {0.0}
    if len(rates) == 1:
        out["dropout"] = float(rates.pop())
    return out


def _seeds(model):
    low, high = min(model.counts.values()), max(model.counts.values())
    return f"{low} seeds each" if low == high else f"{low} to {high} seeds each"


def _keep(tested, analysis, measure, higher, bounds, runs, groups):
    """The finding when no variant is detectably better: keep the model as given."""
    alpha, model = level(), analysis.model(OUTCOME)
    worse = [v for v, e in tested.items() if e.decided(alpha) == "difference"]
    negligible = [v for v, e in tested.items() if e.decided(alpha) == "negligible"]
    detectable = min(e.detectable(alpha, analysis.family) for e in tested.values())
    span = bounds[1] - bounds[0]
    reach = (f"these seeds detect a difference of {number(detectable, 3)} or more with 80% power, so a "
             "smaller benefit is not excluded" if detectable < span else
             f"these seeds cannot detect any difference in {measure} (it would take more than its "
             "whole range): train more seeds")
    given = given_levels(analysis.setups)
    hopeful = max(tested, key=lambda v: tested[v].estimate if higher else -tested[v].estimate)
    best = tested[hopeful]
    closest = interval(best.estimate, best.low, best.high, signed=True)
    if detectable >= span and not worse:  # no power at all: no advice either
        act = (f"No answer yet: these seeds cannot detect any difference in {measure}; train more "
               f"seeds (the best-looking so far, '{hopeful}': {closest})")
    else:
        act = (f"Keep your model as given: no variant is detectably better on {measure} (the "
               f"best-looking, '{hopeful}', {closest})")
    if worse:
        act += "; do not " + " or ".join(action(w, given) for w in worse[:3])
        act += f" (and {len(worse) - 3} more worse variants)" if len(worse) > 3 else ""
    remedy = given_remedy(runs, groups)
    if remedy:  # the cheapest action, where it was measured to help
        act += (f". Re-estimating its BatchNormalization statistics after training raised its "
                f"validation probe from {number(remedy[0], 3)} to {number(remedy[1], 3)}")
    text = (f"Keep the model as given: no variant is detectably better on {measure} ({len(tested)} "
            f"variant{'s' if len(tested) > 1 else ''}, {_seeds(model)}, {model_text(model)}, Holm over "
            f"the study's {analysis.family} contrasts{_look()}); {reach}.")
    if negligible:
        text += (f" Within +-{tested[negligible[0]].margin:g} of it (negligible): "
                 f"{', '.join(repr(v) for v in negligible)}.")
    if worse:
        text += f" Detectably worse: {', '.join(repr(w) for w in worse)}."
    return [Finding(*RULE, text, {"measure": measure, "variant": None, "detectable": detectable,
                                  "action": act + ".",
                                  "worse": worse, "negligible": negligible, "comparisons": len(tested),
                                  "family": analysis.family,
                                  "tests": {v: e.as_numbers() for v, e in tested.items()}}, INFO)]


@finding_rule("RA260", order=10,
              summary="a study's recommendation: the best variant against the model as given, with its test")
def recommendation(runs, groups):
    """[the RA260 finding] for runs grouped by variant, or [] without the model as given."""
    analysis = analyse(runs, groups)
    measure, values, higher, bounds, _ = analysis.outcome(OUTCOME)
    variants = [v for v in dict.fromkeys(groups.values()) if v != GIVEN]
    present = {groups[r] for r in values}
    if GIVEN not in present or not variants:
        return []
    tested = {v: analysis.get(key_of(v)) for v in variants if analysis.get(key_of(v)) is not None}
    if not tested:
        return [Finding(*RULE, "No recommendation: the model as given and its variants leave no "
                        "degrees of freedom to test with; run the study with --seeds 2 or more.",
                        {"measure": measure}, NOTICE)]
    better = {v: e for v, e in tested.items()
              if e.decided(level()) == "difference" and (e.estimate > 0) == higher}
    if not better:
        return _keep(tested, analysis, measure, higher, bounds, runs, groups)
    variant = max(better, key=lambda v: better[v].estimate if higher else -better[v].estimate)
    best, model = better[variant], analysis.model(OUTCOME)
    low, high = best.low, best.high  # simultaneous over the study's contrasts
    text = (f"For this model: {variant}: {measure} {best.estimate:+.3g} (simultaneous "
            f"{confidence_text()} interval [{low:+.3g}, {high:+.3g}] over the study's "
            f"{analysis.family} contrasts, Holm-adjusted {p_text(best.p_holm)}{_look()}, "
            f"{model.counts[variant]} and {model.counts[GIVEN]} seeds, {model_text(model)}) over the "
            f"model as given ({number(model.mean(variant))} against {number(model.mean(GIVEN))}).")
    text += _given_remedy(runs, groups)
    act = (f"Change your model: {action(variant, given_levels(analysis.setups))} ({measure} "
           f"{interval(best.estimate, low, high, signed=True)} over the model as given).")
    return [Finding(*RULE, text, {"measure": measure, "variant": variant, "difference": best.estimate,
                                  "action": act,
                                  "low": low, "high": high, "p_holm": best.p_holm, "level": level(),
                                  "n_variant": model.counts[variant], "n_given": model.counts[GIVEN],
                                  "comparisons": len(tested), "family": analysis.family,
                                  "tests": {v: e.as_numbers() for v, e in tested.items()}}, NOTICE)]
