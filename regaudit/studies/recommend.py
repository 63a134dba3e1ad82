"""RA260: one recommendation for this model, backed by its test.

Every variant of a study is compared with the model as given on the final outcome
(validation accuracy, else validation loss: `regaudit.answer.outcomes.outcome`), Welch's t-test
Holm-corrected over those comparisons (`regaudit.answer.statistics.compare_groups`). The
recommendation is the variant with the largest improvement among the significant ones,
stated with its difference, its simultaneous 95% interval (Bonferroni over the
comparisons, within the outcome's bounds) and the Holm-adjusted p; when none is
significant, it says so with the smallest difference these seeds could detect.
"""

import numpy as np

from regaudit.answer.levels import NOTICE, INFO
from regaudit.answer import outcomes
from regaudit.answer.finding import Finding, finding_rule, number, p_text
from regaudit.answer.statistics import ALPHA, compare_groups, level, welch_interval
from regaudit.studies.design import GIVEN

RULE = ("RA260", "study_recommendation")


def _percent(value):
    return f"{value:.0%}" if round(value, 2) == value else f"{value:.2%}"


def _look():
    """How the level was chosen, when a sequential look set it below ALPHA."""
    if level() >= ALPHA:
        return ""
    return f", tested at {level():.3g}, this look's share of {ALPHA:g} in the sequential plan"


def _given_remedy(runs, groups):
    """A sentence on the model as given with its BN statistics re-estimated (RA213), when
    that was measured and raised its validation-probe accuracy; else ""."""
    from regaudit.answer.remedies import RULE as REMEDY, remedy_pairs

    pairs = [p for run, p in remedy_pairs(runs, "accuracy").items() if groups.get(run) == GIVEN]
    if not pairs:
        return ""
    before, after = np.mean(pairs, axis=0)
    if after <= before:
        return ""
    return (f" With its BatchNormalization statistics re-estimated after training, the model as "
            f"given scores {number(after)} instead of {number(before)} on the validation probe "
            f"({REMEDY[0]}, {len(pairs)} runs): try that remedy before changing the architecture.")


@finding_rule("RA260", order=10,
              summary="a study's recommendation: the best variant against the model as given, with its test")
def recommendation(runs, groups):
    """[the RA260 finding] for runs grouped by variant, or [] without the model as given."""
    measure, values, higher, bounds = outcomes.outcome(runs)
    by_group = outcomes.by_group(values, groups)
    if GIVEN not in by_group or len(by_group) < 2:
        return []
    seeds = {g: len(v) for g, v in by_group.items()}
    pairs = [(g, GIVEN) for g in by_group if g != GIVEN]
    comparisons = compare_groups(by_group, pairs)
    if not comparisons:
        return [Finding(*RULE, f"No recommendation: the model as given and its variants need two "
                        f"seeds or more each (seeds: {min(seeds.values())} to {max(seeds.values())}); "
                        "run the study with --seeds 3.", {"measure": measure}, NOTICE)]
    family = comparisons[0].family
    better = [c for c in comparisons if c.significant and (c.high != GIVEN) == higher]
    given = by_group[GIVEN]
    if not better:
        detectable = min(c.detectable for c in comparisons)
        worse = [c.low if higher else c.high for c in comparisons if c.significant]
        low_n, high_n = min(seeds.values()), max(seeds.values())
        each = f"{low_n} seeds each" if low_n == high_n else f"{low_n} to {high_n} seeds each"
        text = (f"For this model no variant is detectably better than the model as given on "
                f"{measure} ({len(comparisons)} variant{'s' if len(comparisons) > 1 else ''}, {each}, "
                f"Welch t-tests Holm-corrected over {family}{_look()}); these seeds detect a difference of {number(detectable)} or more with "
                f"80% power, so a smaller benefit is not excluded.")
        if worse:
            text += f" Detectably worse: {', '.join(repr(w) for w in worse)}."
        return [Finding(*RULE, text, {"measure": measure, "variant": None, "detectable": detectable,
                                      "worse": worse, "comparisons": family,
                                      "tests": [c.as_numbers() for c in comparisons]}, INFO)]
    best = max(better, key=lambda c: c.difference)
    remedy = _given_remedy(runs, groups)
    variant = best.high if higher else best.low
    difference, low, high = welch_interval(by_group[variant], given, 1 - level() / family)
    span = bounds[1] - bounds[0]
    low, high = max(low, -span), min(high, span)
    text = (f"For this model: {variant}: {measure} {difference:+.4g} (simultaneous "
            f"{_percent(1 - level())} interval [{low:+.4g}, {high:+.4g}] over {family} comparisons, "
            f"Holm-adjusted {p_text(best.p_holm)}{_look()}, {seeds[variant]} and {seeds[GIVEN]} seeds) "
            f"over the model as given ({number(np.mean(by_group[variant]))} against "
            f"{number(np.mean(given))}).") + remedy
    return [Finding(*RULE, text, {"measure": measure, "variant": variant, "difference": difference,
                                  "low": low, "high": high, "p_holm": best.p_holm, "level": level(),
                                  "n_variant": seeds[variant], "n_given": seeds[GIVEN],
                                  "comparisons": family,
                                  "tests": [c.as_numbers() for c in comparisons]}, NOTICE)]
