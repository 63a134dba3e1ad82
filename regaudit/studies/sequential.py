"""Seeds chosen by power, honestly: a group-sequential plan for a study's tests.

A study starts with `seeds` per variant. After each look, a test that is neither
significant nor hopeless (the power analysis of `regaudit.answer.statistics.seeds_needed` says
at most `max_seeds` per group would detect the observed difference with 80% power) asks
for more seeds; the study adds them to every variant (balanced) and looks again, up to
`max_seeds`.

Looking more than once would raise the false-positive rate if each look tested at 5%.
Each look k therefore tests at the alpha the Lan-DeMets O'Brien-Fleming-type spending
function releases between the previous look and this one,

    spent(t) = 2 - 2 Phi(z_{1 - alpha/2} / sqrt(t)),   t = seeds / max_seeds,
    level_k  = spent(t_k) - spent(t_{k-1}),

(Lan & DeMets 1983, Biometrika 70:659), and the study reports its findings at the level
of the look it stopped at. Whatever the look, a false claim at that look has probability
at most level_k, and the levels of all looks sum to spent(1) = alpha: the union bound
keeps the study's false-positive rate at most alpha per test, however the looks fall
(conservative: it ignores the correlation between looks). With `max_seeds == seeds`
there is one look at level alpha, the fixed design.
"""

from dataclasses import dataclass

import numpy as np
from scipy import stats

from regaudit.answer.claims import CLAIM_PREFIX
from regaudit.answer.statistics import ALPHA, seeds_needed
from regaudit.studies.recommend import RULE


def spent(t, alpha=ALPHA):
    """The alpha spent by information fraction t in (0, 1] (O'Brien-Fleming type)."""
    if t <= 0:
        return 0.0
    t = min(1.0, float(t))
    return float(2 - 2 * stats.norm.cdf(stats.norm.ppf(1 - alpha / 2) / np.sqrt(t)))


def look_level(seeds, previous, max_seeds, alpha=ALPHA):
    """The significance level of a look at `seeds` per group after one at `previous`."""
    if max_seeds <= 0 or seeds <= previous:
        return 0.0
    return spent(seeds / max_seeds, alpha) - spent(previous / max_seeds, alpha)


@dataclass
class Decision:
    """After a look: how many tests were significant, undecided (reachable by more seeds)
    or out of reach, and the seeds per variant for the next look (None: stop)."""

    significant: int
    undecided: int
    out_of_reach: int
    next_seeds: object


#: A test stays undecided while the upper end of the observed difference's one-sided
#: interval at this confidence would be detectable with `max_seeds`.
PLAUSIBLE = 0.9


def decide(comparisons, seeds, max_seeds, alpha=ALPHA):
    """A look's decision from its comparisons [`statistics.Comparison.as_numbers()`,
    computed at the look's level]. A comparison not significant is undecided when a
    difference it leaves plausible (the upper end of its one-sided 90% interval) would be
    detected with 80% power by `max_seeds` per group at the level a last look at
    `max_seeds` would have (Holm's first step: level / family); the next look asks for
    the seeds the observed difference needs, at least one more, at most `max_seeds`."""
    final = look_level(max_seeds, seeds, max_seeds, alpha)
    significant, wanted = 0, []
    for c in comparisons:
        if c["significant"]:
            significant += 1
            continue
        sd, n_high, n_low = c.get("sd", float("nan")), c["n_high"], c["n_low"]
        if not sd > 0:
            continue
        se = sd * np.sqrt(1 / n_high + 1 / n_low)
        upper = abs(c["difference"]) + stats.t.ppf(PLAUSIBLE, n_high + n_low - 2) * se
        level = final / max(1, c["family"])
        if seeds_needed(upper, sd, level) <= max_seeds:
            wanted.append(seeds_needed(abs(c["difference"]), sd, level))
    out = len(comparisons) - significant - len(wanted)
    if not wanted or seeds >= max_seeds:
        return Decision(significant, len(wanted), out, None)
    return Decision(significant, len(wanted), out, int(min(max_seeds, max(seeds + 1, max(wanted)))))


def tests_of(findings):
    """The comparisons a look decides on: RA260's (each variant against the model as
    given) and those of the article's claims (RA251-RA256)."""
    out = []
    for finding in findings:
        if finding.id == RULE[0]:
            out += finding.numbers.get("tests", [])
        elif finding.id.startswith(CLAIM_PREFIX) and isinstance(finding.numbers.get("comparisons"), list):
            out += finding.numbers["comparisons"]
    return out
