"""One linear model over a study's cells, every question a contrast of it.

A study is a designed experiment: its runs are cells (the variants, or any groups of runs
that are replicates of one setup) times seeds. The outcome is modelled as

    y = mu_cell + e,    e ~ N(0, sigma_cell^2) independent,

by ordinary least squares (statsmodels' `OLS`, one mean per cell) with
heteroscedasticity-robust errors (HC2: for this model exactly each cell's own variance
over its runs). A question of the study (Dropout's effect averaged over the BN settings,
an interaction, a variant against the model as given) is a contrast `sum_c w_c mu_c`
with weights summing to 0; its standard error is sqrt(sum_c w_c^2 s_c^2 / n_c) and its
degrees of freedom Satterthwaite's (1946), so a contrast of many cells is measured by all
their runs (a main effect over a factorial design: Box, Hunter & Hunter, *Statistics for
Experimenters*, ch. 5) while a noisy cell cannot borrow the precision of a quiet one.

Why robust, not pooled: on the seed study (the article's CNN on digits, 4 epochs) the
seed-to-seed standard deviation of validation accuracy ranged from 0.008 (no BN) to 0.22
(BN at a 10x learning rate); one pooled sigma would call the quiet cells' differences
noise and the noisy cells' differences signal. The simulation in the tests and
`benchmarks/seeds_policy.py` holds the false-positive rate at that spread.

Why not blocked on the seed: a study gives every variant of seed s the same data order
(common random numbers), so a seed block could cancel shared noise; on the seed study
the runs sharing a seed correlated at +0.07 (validation accuracy) and +0.39 (first-epoch
loss) over every seed, too little to pay for a block's degrees of freedom at 3 seeds.
`within_seed_correlation` measures it, (MS_seed - MS_res) / (MS_seed + (k - 1) MS_res)
from the additive cells + seeds fit, when asked (`benchmarks/reanalyse_study.py` prints it).

A contrast is tested two ways: the difference (H0: it is 0; two-sided t) and, where the
outcome has a practical margin m, equivalence (H0: |it| >= m; two one-sided tests,
Schuirmann 1987: p = max of the two one-sided p). `holm_family` adjusts every p of a
study's contrasts together: Holm's step-down (1979) with Shaffer's logical constraints,
since at most one of a contrast's two nulls can be true; the family's error stays at
alpha.
"""

import functools
from dataclasses import dataclass, field

import numpy as np

from regaudit.answer.statistics import POWER, stats


@dataclass
class Estimate:
    """A contrast of the model: its estimate, standard error, Satterthwaite degrees of
    freedom, two-sided p (H0: 0), 95% interval (within the quantity's bounds), the
    equivalence p (H0: |contrast| >= margin; NaN without a margin), the Holm-adjusted ps
    (set by `holm_family`), the runs and cells it uses."""

    estimate: float
    se: float
    df: float
    p: float
    low: float
    high: float
    margin: float = float("nan")
    p_equal: float = float("nan")
    p_holm: float = float("nan")
    p_equal_holm: float = float("nan")
    runs: int = 0
    cells: dict = field(default_factory=dict)

    def decided(self, alpha):
        """"negligible", "difference" or None at level `alpha` (after `holm_family`): a
        contrast shown within the margin is negligible even when it is also shown not to be
        0 (a real difference too small to matter)."""
        if self.p_equal_holm < alpha:
            return "negligible"
        if self.p_holm < alpha:
            return "difference"
        return None

    def detectable(self, alpha, family=1):
        """The smallest true contrast these runs detect with 80% power at alpha / family."""
        if not (self.se > 0 and self.df >= 1):
            return float("nan")
        return float((stats.t.ppf(1 - alpha / family / 2, self.df) + stats.t.ppf(POWER, self.df)) * self.se)

    def as_numbers(self):
        return {key: (float(value) if isinstance(value, (float, np.floating)) else value)
                for key, value in self.__dict__.items()}


def span_of(weights, bounds):
    """The largest |contrast| a quantity within `bounds` allows: the positive weights'
    sum times the bounds' width (weights summing to 0)."""
    width = bounds[1] - bounds[0]
    return float(sum(w for w in weights.values() if w > 0) * width)


class CellModel:
    """The cell-means linear model of `values` {run: y} with cells {run: cell}, robust
    errors; `seeds` {run: seed} to measure the within-seed correlation. `contrast({cell:
    w})` answers."""

    def __init__(self, values, cells, seeds=None):
        runs = [r for r in values if r in cells and np.isfinite(values[r])]
        self.cells = list(dict.fromkeys(cells[r] for r in runs))
        self.counts = {c: sum(cells[r] == c for r in runs) for c in self.cells}
        self.y = np.array([values[r] for r in runs], dtype=float)
        self._cell_of = np.array([self.cells.index(cells[r]) for r in runs], dtype=int)
        self.fit = self._fit() if len(self.y) > len(self.cells) else None
        self.variance = {c: float(np.var(self.y[self._cell_of == i], ddof=1)) if self.counts[c] > 1
                         else float("nan") for i, c in enumerate(self.cells)}
        self._seeds = [seeds.get(r) for r in runs] if seeds else None

    @functools.cached_property
    def within_seed_correlation(self):
        """The intraclass correlation of runs sharing a seed (NaN without seeds); computed
        when asked, not in every look's model."""
        return _within_seed_correlation(self, self._seeds) if self._seeds else float("nan")

    def _fit(self):
        from statsmodels.regression.linear_model import OLS

        design = np.zeros((len(self.y), len(self.cells)))
        design[np.arange(len(self.y)), self._cell_of] = 1.0
        return OLS(self.y, design).fit(cov_type="HC2")

    @property
    def df(self):
        """The residual degrees of freedom of the cell-means fit."""
        return float(len(self.y) - len(self.cells))

    def mean(self, cell):
        """The cell's mean (its runs' mean)."""
        return float(self.fit.params[self.cells.index(cell)]) if self.fit is not None else \
            float(np.mean(self.y[self._cell_of == self.cells.index(cell)]))

    def contrast(self, weights, bounds=(-np.inf, np.inf), margin=float("nan"), level=0.95):
        """The Estimate of sum w_c mu_c (weights over this model's cells, summing to 0), or
        None when one of its cells has fewer than two runs."""
        weights = {c: w for c, w in weights.items() if w}
        if self.fit is None or any(self.counts.get(c, 0) < 2 for c in weights):
            return None
        vector = np.zeros(len(self.cells))
        for cell, weight in weights.items():
            vector[self.cells.index(cell)] += weight
        estimate = float(vector @ self.fit.params)
        parts = [w ** 2 * self.variance[c] / self.counts[c] for c, w in weights.items()]
        se = float(np.sqrt(vector @ self.fit.cov_params() @ vector))  # HC2: sum(parts)
        if se == 0:
            df = float(sum(self.counts[c] - 1 for c in weights))
            p, half = (1.0 if estimate == 0 else 0.0), 0.0
        else:
            df = float(sum(parts) ** 2 / sum(p ** 2 / (self.counts[c] - 1) for p, c in zip(parts, weights) if p))
            p = float(2 * stats.t.sf(abs(estimate) / se, df))
            half = float(stats.t.ppf(0.5 + level / 2, df) * se)
        limit = span_of(weights, bounds)
        return Estimate(estimate, se, df, p, max(-limit, estimate - half), min(limit, estimate + half),
                        margin, tost(estimate, se, df, margin),
                        runs=int(sum(self.counts[c] for c in weights)), cells=dict(weights))


def _within_seed_correlation(model, seeds):
    """The intraclass correlation of runs sharing a seed, from the additive fit of cells and
    seeds against cells alone (NaN without two seeds and residual degrees of freedom)."""
    blocks = list(dict.fromkeys(seeds))
    if None in blocks or len(blocks) < 2:
        return float("nan")
    rows = np.arange(len(model.y))
    cells_only = np.zeros((len(model.y), len(model.cells)))
    cells_only[rows, model._cell_of] = 1.0
    with_seeds = np.hstack([cells_only, np.zeros((len(model.y), len(blocks) - 1))])
    for row, seed in enumerate(seeds):
        if blocks.index(seed):
            with_seeds[row, len(model.cells) + blocks.index(seed) - 1] = 1.0
    rank = np.linalg.matrix_rank(with_seeds)
    if rank < with_seeds.shape[1] or len(model.y) <= rank:
        return float("nan")
    ssr = [float(np.sum((model.y - d @ np.linalg.lstsq(d, model.y, rcond=None)[0]) ** 2))
           for d in (cells_only, with_seeds)]
    seeds_ms = (ssr[0] - ssr[1]) / (len(blocks) - 1)
    residual_ms = ssr[1] / (len(model.y) - rank)
    k = len(model.y) / len(blocks)
    return float((seeds_ms - residual_ms) / (seeds_ms + (k - 1) * residual_ms)) if residual_ms > 0 else float("nan")


def tost(estimate, se, df, margin):
    """The two one-sided tests' p of H0: |contrast| >= margin (NaN without a margin)."""
    if not margin > 0 or not np.isfinite(margin):
        return float("nan")
    if se == 0:
        return 0.0 if abs(estimate) < margin else 1.0
    lower = stats.t.sf((estimate + margin) / se, df)
    upper = stats.t.cdf((estimate - margin) / se, df)
    return float(max(lower, upper))


def holm_family(estimates):
    """Adjust every p of `estimates` together (the difference p of each, the equivalence p
    of those with a margin), in place; return the number of contrasts (the first step's
    divisor).

    Holm's step-down with Shaffer's logical constraints (Shaffer 1986, JASA 81:826): a
    contrast's two nulls (it is 0; it lies beyond +-margin) cannot both be true, so at each
    step the divisor is the number of contrasts that still have a hypothesis not rejected,
    the most true nulls that can remain, rather than the number of hypotheses. Without
    margins this is Holm's method exactly (`regaudit.answer.statistics.holm`, equal to
    statsmodels' `multipletests(method="holm")`, which runs gc.collect() on every call)."""
    slots = [(e, "p_holm", e.p) for e in estimates if np.isfinite(e.p)]
    slots += [(e, "p_equal_holm", e.p_equal) for e in estimates if np.isfinite(e.p_equal)]
    if not slots:
        return 0
    order = sorted(range(len(slots)), key=lambda i: slots[i][2])
    running = 0.0
    for step, index in enumerate(order):
        remaining = len({id(slots[i][0]) for i in order[step:]})
        running = max(running, min(1.0, remaining * slots[index][2]))
        setattr(slots[index][0], slots[index][1], float(running))
    return len({id(e) for e, _, _ in slots})
