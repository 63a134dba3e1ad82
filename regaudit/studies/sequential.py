"""Seeds only where a question is still open: a group-sequential plan for a study.

A study starts with `seeds` per variant. After each look (the study's one analysis,
`regaudit.answer.analysis`, at the look's level), every contrast is decided (a
difference, or negligible within the margin) or open. An open contrast is reachable when
`max_seeds` per group would decide it with 80% power at the level a last look would have
(Holm's first step: level / family): a difference as large as the upper end of its
one-sided 90% interval, or, when the estimate lies inside the margin, equivalence. A
variant-against-the-model-as-given question only asks whether the variant is better, so
a variant already behind stops getting seeds (racing, as irace and Optuna's
`WilcoxonPruner` prune what a test settled). Only the variants of reachable open
contrasts get more seeds: as many as the observed contrast needs, at least one more, at
most `max_seeds`. Planning uses t quantiles, the contrast's standard error shrinking as
1 / sqrt(seeds) and its degrees of freedom growing as seeds - 1.

Looking more than once would raise the false-positive rate if each look tested at 5%.
Look k therefore tests at the alpha a Lan-DeMets spending function releases between the
previous look and this one, t = the most seeds any variant has / `max_seeds`:

    O'Brien-Fleming type  spent(t) = 2 - 2 Phi(z_{1 - alpha/2} / sqrt(t))
    Pocock type           spent(t) = alpha ln(1 + (e - 1) t)
    level_k = spent(t_k) - spent(t_{k-1})

(Lan & DeMets 1983, Biometrika 70:659). The levels of all looks sum to at most
spent(1) = alpha, so the union bound keeps the study's false-positive rate at most alpha
per hypothesis however the looks fall (conservative: it ignores the correlation between
looks). Pocock spends more at the first look and less at the last; the default,
O'Brien-Fleming with reachability judged at the upper end of the one-sided 90% interval,
is the cheapest policy the simulation in `benchmarks/seeds_policy.py` found with 80%
power and at most 5% false positives (docs: study.md). With `max_seeds == seeds`
there is one look at level alpha, the fixed design.
"""

import math
from dataclasses import dataclass

import numpy as np

from regaudit.answer.statistics import ALPHA, POWER, stats

#: The spending functions by name; the default is the one the simulation chose.
SPENDING = ("obrien-fleming", "pocock")
DEFAULT_SPENDING = "obrien-fleming"
#: An open contrast stays reachable while the upper end of its one-sided interval at this
#: confidence would be decided with `max_seeds`.
PLAUSIBLE = 0.9


def spent(t, alpha=ALPHA, spending=DEFAULT_SPENDING):
    """The alpha spent by information fraction t in (0, 1]."""
    if t <= 0:
        return 0.0
    t = min(1.0, float(t))
    if spending == "pocock":
        return float(alpha * math.log(1 + (math.e - 1) * t))
    return float(2 - 2 * stats.norm.cdf(stats.norm.ppf(1 - alpha / 2) / np.sqrt(t)))


def look_level(seeds, previous, max_seeds, alpha=ALPHA, spending=DEFAULT_SPENDING):
    """The significance level of a look at `seeds` per group after one at `previous`."""
    if max_seeds <= 0 or seeds <= previous:
        return 0.0
    return spent(seeds / max_seeds, alpha, spending) - spent(previous / max_seeds, alpha, spending)


@dataclass
class Decision:
    """After a look: how many contrasts were decided, open and reachable, or out of reach,
    and the seeds {variant: seeds} the next look gives the variants that need more (None:
    stop)."""

    decided: int
    open: int
    out_of_reach: int
    seeds: object


def _seeds_for(found, n_now, max_seeds, effect, level, sides):
    """The fewest seeds (up to `max_seeds`; inf beyond) at which a contrast like `found`
    (at `n_now` seeds) reaches `effect` with 80% power at `level`: its standard error
    shrinking as 1 / sqrt(seeds), its degrees of freedom growing as seeds - 1 (t quantiles,
    the robust model's Satterthwaite df scaled)."""
    if not effect > 0 or max_seeds <= n_now:
        return float("inf")
    n = np.arange(n_now + 1, max_seeds + 1)
    df = found.df * (n - 1) / max(1, n_now - 1)
    se = found.se * np.sqrt(n_now / n)
    quantiles = stats.t.ppf(np.array([[1 - level / sides], [POWER]]), df)  # one call for every n
    enough = np.flatnonzero((quantiles[0] + quantiles[1]) * se <= effect)
    return int(n[enough[0]]) if enough.size else float("inf")


def needed(found, n_now, max_seeds, level_end, higher=None, plausible_at=None):
    """The seeds an open contrast needs to be decided (None: out of reach): `higher` +1/-1
    when only an improvement in that direction is asked about; `plausible_at` the
    one-sided confidence of the effect reachability is judged at (default PLAUSIBLE)."""
    if not found.se > 0 or found.df < 1:
        return None
    effect = found.estimate * higher if higher else abs(found.estimate)
    plausible = effect + stats.t.ppf(plausible_at or PLAUSIBLE, found.df) * found.se
    options = []
    if _seeds_for(found, n_now, max_seeds, plausible, level_end, 2) <= max_seeds:
        options.append(min(max_seeds, _seeds_for(found, n_now, max_seeds, effect, level_end, 2)))
    margin = found.margin
    if np.isfinite(margin) and abs(found.estimate) < margin and not higher:
        equal = _seeds_for(found, n_now, max_seeds, margin - abs(found.estimate), level_end, 1)
        if equal <= max_seeds:
            options.append(equal)
    if not options:
        return None
    return int(min(max_seeds, max(n_now + 1, min(options))))


def next_look(estimates, family, questions, higher, counts, max_seeds, level_now,
              spending=DEFAULT_SPENDING, plausible_at=None):
    """The Decision after a look at `counts` {variant: seeds}: its `questions` {key:
    Question} that only ask for a better variant signed by whether a `higher` outcome is
    better, reachability judged at the level a last look at `max_seeds` has under
    `spending` (what a study and its simulation both decide by)."""
    improvement = {k: (1 if higher else -1) for k, q in questions.items() if q.improvement}
    level_end = look_level(max_seeds, max(counts.values()), max_seeds, spending=spending)
    return decide(estimates, family, counts, max_seeds, level_now, level_end, improvement, plausible_at)


def decide(estimates, family, counts, max_seeds, level_now, level_end, improvement=None,
           plausible_at=None):
    """A look's decision from its estimates {key: Estimate} (Holm over `family`
    contrasts, at `level_now`), the seeds {variant: seeds} so far, and `improvement`
    {key: +1/-1} for the questions that only ask for a better variant."""
    improvement = improvement or {}
    decided = out = 0
    want = {}
    end = level_end / max(1, family)
    top = max(counts.values(), default=0)
    for key, found in estimates.items():
        if found.decided(level_now):
            decided += 1
            continue
        n_now = min(counts.get(c, 0) for c in found.cells)
        seeds = (needed(found, n_now, max_seeds, end, improvement.get(key), plausible_at)
                 if n_now < max_seeds else None)
        if seeds is None:
            out += 1
            continue
        for cell in found.cells:  # the next look is later in information time than this one
            want[cell] = max(want.get(cell, 0), min(max_seeds, max(seeds, top + 1)))
    more = {cell: n for cell, n in want.items() if n > counts.get(cell, 0)}
    opened = len(estimates) - decided - out
    return Decision(decided, opened, out, more or None)
