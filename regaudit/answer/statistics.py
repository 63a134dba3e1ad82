"""The statistics behind every comparison the report states (no TensorFlow, no MLflow).

One convention everywhere: a comparison of groups A and B names the group with the
higher mean first, and its difference is that group's mean minus the other's (so it is
never negative); whether higher is better is said in words, once. A difference is
claimed only when Welch's t-test, Holm-corrected over the comparisons of the same
measure, rejects at ALPHA; otherwise the report says "no detectable difference" and
what these seeds could have detected (the smallest difference with 80% power) and how
many seeds per group the observed difference would need.
"""

import contextlib
import contextvars
from dataclasses import dataclass

import importlib

import numpy as np


class _Later:
    """A module imported at its first use: scipy's stats and optimize take seconds to
    import, and every `regaudit` command imports this module (the studies' levels)."""

    def __init__(self, name):
        self._name = name

    def __getattr__(self, attribute):
        return getattr(importlib.import_module(self._name), attribute)


stats, optimize = _Later("scipy.stats"), _Later("scipy.optimize")

#: Significance level of every test and 1 - level of every interval.
ALPHA = 0.05
_LEVEL = contextvars.ContextVar("regaudit_significance_level", default=ALPHA)


def level():
    """The significance level tests use now: ALPHA, or a study look's level
    (`regaudit.studies.sequential`) inside `at_level`."""
    return _LEVEL.get()


@contextlib.contextmanager
def scoped(variable, value):
    """`variable` (a ContextVar) set to `value` inside, restored after."""
    token = variable.set(value)
    try:
        yield
    finally:
        variable.reset(token)


def at_level(alpha):
    """Every test inside tests at `alpha` (a group-sequential look's share of ALPHA)."""
    return scoped(_LEVEL, float(alpha))


#: Power of the "what could these runs have detected" statements.
POWER = 0.8
#: Seeds-per-group answers stop here ("more than 1000").
MAX_SEEDS = 1000


def bounded_interval(values, bounds=(-np.inf, np.inf), level=1 - ALPHA):
    """(mean, low, high): the mean of `values` and its t-interval at `level`, intersected
    with `bounds` (an accuracy's interval stays in [0, 1]). Intersecting with the set the
    true mean must lie in keeps the coverage. NaN bounds for fewer than two values."""
    values = np.asarray(values, dtype=float)
    mean = float(values.mean())
    if values.size < 2:
        return mean, float("nan"), float("nan")
    half = float(stats.t.ppf(0.5 + level / 2, values.size - 1) * stats.sem(values))
    return mean, max(bounds[0], mean - half), min(bounds[1], mean + half)


def hedges_g(a, b):
    """Hedges' g: (mean a - mean b) over the pooled std, times the small-sample correction
    1 - 3 / (4 (na + nb) - 9). +-inf when the groups differ without any spread."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    na, nb = a.size, b.size
    pooled = pooled_std(a, b)
    if pooled == 0:
        return float("inf") * np.sign(a.mean() - b.mean()) if a.mean() != b.mean() else 0.0
    return float((a.mean() - b.mean()) / pooled * (1 - 3 / (4 * (na + nb) - 9)))


def pooled_std(a, b):
    """The pooled standard deviation of two samples (ddof 1 in each)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    na, nb = a.size, b.size
    return float(np.sqrt(((na - 1) * a.var(ddof=1) + (nb - 1) * b.var(ddof=1)) / (na + nb - 2)))


def welch_p(a, b):
    """Two-sided p-value of Welch's t-test; 0 when the groups differ without any spread,
    1 when they are identical."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.var() == 0 and b.var() == 0:
        return 1.0 if a.mean() == b.mean() else 0.0
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def holm(pvalues):
    """Holm's step-down adjusted p-values (same order as given): the k-th smallest p is
    multiplied by m - k + 1, made monotone, capped at 1."""
    p = np.asarray(pvalues, dtype=float)
    m = p.size
    order = np.argsort(p)
    adjusted = np.empty(m)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return adjusted


def power(difference, sd, na, nb, alpha=ALPHA):
    """Power of the two-sided two-sample t-test (pooled, df = na + nb - 2) to detect a
    true difference `difference` between means when each group's std is `sd`: the
    noncentral t with noncentrality difference / (sd sqrt(1/na + 1/nb))."""
    df = na + nb - 2
    if df < 1 or sd <= 0:
        return float("nan")
    critical = stats.t.ppf(1 - alpha / 2, df)
    nc = abs(difference) / (sd * np.sqrt(1 / na + 1 / nb))
    upper = stats.nct.sf(critical, df, nc)
    lower = stats.nct.cdf(-critical, df, nc)  # the far tail: NaN in scipy for large nc
    return float(np.nan_to_num(upper, nan=1.0) + np.nan_to_num(lower, nan=0.0))


def detectable_difference(sd, na, nb, alpha=ALPHA, target=POWER):
    """The smallest true difference the two-sample t-test detects with probability
    `target` at level `alpha`, given these group sizes and std `sd`."""
    if na + nb - 2 < 1 or not sd > 0:
        return float("nan")
    low = high = sd * np.sqrt(1 / na + 1 / nb)
    while power(high, sd, na, nb, alpha) < target:
        low, high = high, 2 * high
    if power(low, sd, na, nb, alpha) >= target:
        low = 0.0
    return float(optimize.brentq(lambda d: power(d, sd, na, nb, alpha) - target, low, high))


def seeds_needed(difference, sd, alpha=ALPHA, target=POWER, limit=MAX_SEEDS):
    """Seeds per group (equal groups) for the two-sample t-test to detect `difference`
    with probability `target`; `limit + 1` stands for "more than `limit`"."""
    if not sd > 0 or difference == 0:
        return limit + 1 if difference == 0 else 2
    if power(difference, sd, limit, limit, alpha) < target:
        return limit + 1
    low, high = 1, limit  # power rises with n: bisect for the first n that reaches target
    while high - low > 1:
        middle = (low + high) // 2
        if power(difference, sd, middle, middle, alpha) >= target:
            high = middle
        else:
            low = middle
    return max(2, high)


def mcnemar_exact(only_first, only_second):
    """Two-sided exact McNemar test of paired predictions on the same samples: the
    binomial test of `only_first` successes in `only_first + only_second` discordant
    pairs at 1/2. 1 when nothing is discordant."""
    discordant = int(only_first) + int(only_second)
    if discordant == 0:
        return 1.0
    return float(stats.binomtest(int(only_first), discordant, 0.5).pvalue)


@dataclass
class Comparison:
    """Two groups compared on one measure: `high` has the higher mean, `difference` is
    mean(high) - mean(low) >= 0, `p` Welch's p, `p_holm` Holm-adjusted over `family`
    comparisons, `g` Hedges' g of high against low, `detectable` the smallest difference
    these seeds detect with 80% power at the Holm-corrected level of a single test
    (level / family), `seeds` the seeds per group the observed difference would need,
    `level` the significance level it was tested at (`level()`: ALPHA but in a study's
    sequential look), `sd` the pooled standard deviation."""

    high: str
    low: str
    mean_high: float
    mean_low: float
    n_high: int
    n_low: int
    difference: float
    p: float
    p_holm: float
    family: int
    g: float
    detectable: float
    seeds: int
    level: float = ALPHA
    sd: float = float("nan")

    @property
    def significant(self):
        return self.p_holm < self.level

    def as_numbers(self):
        return {key: (float(value) if isinstance(value, (float, np.floating)) else value)
                for key, value in self.__dict__.items()} | {"significant": self.significant}


def compare_groups(by_group, pairs=None):
    """[Comparison] for every pair of groups (or the given `pairs`) with at least two
    values each, Holm-corrected together. `by_group`: {group: [values]}."""
    testable = [g for g, v in by_group.items() if len(v) >= 2]
    if pairs is None:
        pairs = [(a, b) for i, a in enumerate(testable) for b in testable[i + 1:]]
    pairs = [(a, b) for a, b in pairs if a in testable and b in testable]
    if not pairs:
        return []
    raw = [welch_p(by_group[a], by_group[b]) for a, b in pairs]
    adjusted = holm(raw)
    family = len(pairs)
    alpha = level()
    out = []
    for (a, b), p, p_holm in zip(pairs, raw, adjusted):
        x, y = np.asarray(by_group[a], float), np.asarray(by_group[b], float)
        if y.mean() > x.mean():
            (a, x), (b, y) = (b, y), (a, x)
        sd = pooled_std(x, y)
        difference = float(x.mean() - y.mean())
        out.append(Comparison(
            a, b, float(x.mean()), float(y.mean()), x.size, y.size, difference, p, float(p_holm),
            family, hedges_g(x, y), detectable_difference(sd, x.size, y.size, alpha / family),
            seeds_needed(difference, sd, alpha / family), alpha, sd))
    return out


def welch_interval(a, b, level=1 - ALPHA):
    """(difference, low, high): mean(a) - mean(b) and its Welch t-interval at `level`
    (Welch-Satterthwaite degrees of freedom); NaN bounds for fewer than two values each."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    difference = float(a.mean() - b.mean())
    if a.size < 2 or b.size < 2:
        return difference, float("nan"), float("nan")
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    se = float(np.sqrt(va + vb))
    if se == 0:
        return difference, difference, difference
    df = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    half = float(stats.t.ppf(0.5 + level / 2, df) * se)
    return difference, difference - half, difference + half


def interaction(a, b, c, d, level=1 - ALPHA):
    """The difference of differences (mean b - mean a) - (mean d - mean c) of four
    independent groups, its t-interval at `level` and two-sided p (Welch-Satterthwaite
    degrees of freedom): (estimate, low, high, p). NaN where a group has one value."""
    groups = [np.asarray(g, float) for g in (a, b, c, d)]
    estimate = float((groups[1].mean() - groups[0].mean()) - (groups[3].mean() - groups[2].mean()))
    if any(g.size < 2 for g in groups):
        return estimate, float("nan"), float("nan"), float("nan")
    parts = [g.var(ddof=1) / g.size for g in groups]
    se = float(np.sqrt(sum(parts)))
    if se == 0:
        return estimate, estimate, estimate, 1.0 if estimate == 0 else 0.0
    df = sum(parts) ** 2 / sum(p**2 / (g.size - 1) for p, g in zip(parts, groups))
    half = float(stats.t.ppf(0.5 + level / 2, df) * se)
    p = float(2 * stats.t.sf(abs(estimate) / se, df))
    return estimate, estimate - half, estimate + half, p
