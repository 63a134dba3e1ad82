"""One linear model over a study's cells, every question a contrast of it.

A study is a designed experiment: its runs are cells (the variants, or any groups of
runs that are replicates of one setup) times seeds. The outcome is modelled as

    y = mu_cell + beta_seed + e,    e ~ N(0, sigma^2) independent,

by ordinary least squares (statsmodels' `OLS`): one mean per cell, and, when the study's
seeds are paired (seed s gives every variant the same data order), one fixed block effect
per seed. A question of the study (Dropout's effect averaged over the BN settings, an
interaction, a variant against the model as given) is a contrast `sum_c w_c mu_c` with
weights summing to 0, so the seed effects cancel from it. Its standard error uses the
residual variance pooled over every run of the study, with df = runs - cells - (seeds - 1)
degrees of freedom: this is where a factorial design's gain comes from (Fisher; Box,
Hunter & Hunter, *Statistics for Experimenters*, ch. 5): every run informs sigma.

The seed block is used when it pays, that is when the seeds' mean square is at least the
residual mean square of the blocked model (F >= 1: the seed's shared noise is larger than
what the seeds' degrees of freedom cost); otherwise the unpaired cell-means model is kept.
`within_seed_correlation` is the intraclass correlation of runs sharing a seed,
(MS_seed - MS_res) / (MS_seed + (k - 1) MS_res) with k cells per seed.

A contrast is tested two ways: the difference (H0: it is 0; two-sided t) and, where the
outcome has a practical margin m, equivalence (H0: |it| >= m; two one-sided tests,
Schuirmann 1987: p = max of the two one-sided p). `holm_family` adjusts every p of a
study's contrasts together: Holm's step-down (1979) with Shaffer's logical constraints,
since at most one of a contrast's two nulls can be true; the family's error stays at
alpha.
"""

from dataclasses import dataclass, field

import numpy as np

from regaudit.answer.statistics import POWER, stats


@dataclass
class Estimate:
    """A contrast of the model: its estimate, standard error, residual degrees of freedom,
    two-sided p (H0: 0), 95% interval (within the quantity's bounds), the equivalence p
    (H0: |contrast| >= margin; NaN without a margin), the Holm-adjusted ps (set by
    `holm_family`), the runs and cells it uses, and whether the seed block was used."""

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
    paired: bool = False

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
    """The cell-means linear model of `values` {run: y} with cells {run: cell}, blocked on
    `seeds` {run: seed} when pairing pays (see the module). `contrast({cell: w})` answers."""

    def __init__(self, values, cells, seeds=None):
        runs = [r for r in values if r in cells and np.isfinite(values[r])]
        self.cells = list(dict.fromkeys(cells[r] for r in runs))
        self.counts = {c: sum(cells[r] == c for r in runs) for c in self.cells}
        self.y = np.array([values[r] for r in runs], dtype=float)
        self._cell_of = [self.cells.index(cells[r]) for r in runs]
        blocks = [seeds.get(r) for r in runs] if seeds else []
        self.blocks = list(dict.fromkeys(blocks)) if blocks and None not in blocks else []
        self._blocks_of = [self.blocks.index(b) for b in blocks] if self.blocks else []
        self.fit, self.paired, self.within_seed_correlation = None, False, float("nan")
        if len(self.y) <= len(self.cells):
            return
        unpaired = self._fit(False)
        self.fit = unpaired
        if len(self.blocks) > 1 and len(self.y) > len(self.cells) + len(self.blocks) - 1:
            paired = self._fit(True)
            if paired is not None:
                seeds_ms = (unpaired.ssr - paired.ssr) / (len(self.blocks) - 1)
                residual_ms = paired.ssr / paired.df_resid if paired.df_resid else float("nan")
                k = len(self.y) / len(self.blocks)
                if residual_ms > 0:
                    self.within_seed_correlation = float(
                        (seeds_ms - residual_ms) / (seeds_ms + (k - 1) * residual_ms))
                    if seeds_ms >= residual_ms:
                        self.fit, self.paired = paired, True

    def _fit(self, paired):
        from statsmodels.regression.linear_model import OLS

        design = np.zeros((len(self.y), len(self.cells) + (len(self.blocks) - 1 if paired else 0)))
        design[np.arange(len(self.y)), self._cell_of] = 1.0
        if paired:
            for row, block in enumerate(self._blocks_of):
                if block:
                    design[row, len(self.cells) + block - 1] = 1.0
            if np.linalg.matrix_rank(design) < design.shape[1]:
                return None
        return OLS(self.y, design).fit()

    @property
    def df(self):
        return float(self.fit.df_resid) if self.fit is not None else 0.0

    @property
    def sigma(self):
        """The pooled residual standard deviation."""
        return float(np.sqrt(self.fit.scale)) if self.fit is not None else float("nan")

    def mean(self, cell):
        """The cell's mean as the model estimates it (its raw mean when unpaired or balanced)."""
        return float(self.fit.params[self.cells.index(cell)]) if self.fit is not None else float("nan")

    def contrast(self, weights, bounds=(-np.inf, np.inf), margin=float("nan"), level=0.95):
        """The Estimate of sum w_c mu_c (weights over this model's cells, summing to 0), or
        None when a cell has no run or the model has no residual degrees of freedom."""
        if self.fit is None or self.df < 1 or any(c not in self.counts for c in weights):
            return None
        vector = np.zeros(len(self.fit.params))
        for cell, weight in weights.items():
            vector[self.cells.index(cell)] += weight
        estimate = float(vector @ self.fit.params)
        se = float(np.sqrt(max(vector @ self.fit.cov_params() @ vector, 0.0)))
        df = self.df
        if se == 0:
            p = 1.0 if estimate == 0 else 0.0
            half = 0.0
        else:
            p = float(2 * stats.t.sf(abs(estimate) / se, df))
            half = float(stats.t.ppf(0.5 + level / 2, df) * se)
        limit = span_of(weights, bounds)
        return Estimate(estimate, se, df, p, max(-limit, estimate - half), min(limit, estimate + half),
                        margin, tost(estimate, se, df, margin),
                        runs=int(sum(self.counts[c] for c in weights if weights[c])),
                        cells={c: float(w) for c, w in weights.items() if w}, paired=self.paired)


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
