"""The report's axes-level plotting functions, in seaborn's shape: tidy data in (columns
named in each docstring), `ax=None` (a new Figure's Axes), the Axes out. The figure
functions of `regaudit.reports.plots` lay them out in panels."""

import functools

import numpy as np
import seaborn as sns
from matplotlib.ticker import MaxNLocator
from matplotlib.figure import Figure

from regaudit.measures.activations import P15, P50, P85


def palette_of(groups):
    """{group: colour} for the groups of a {run: group} mapping, in first-seen order."""
    names = list(dict.fromkeys(groups.values())) or ["(none)"]
    return dict(zip(names, sns.color_palette(n_colors=len(names))))


#: a group with more runs than this is drawn as its runs' median, with the band where the
#: middle 80% of its runs lie (10th to 90th percentile), instead of a line per run: a
#: figure of 1,000 runs stays readable and draws in about the time of one with a few
MAX_RUN_LINES = 12
#: the band of a group drawn as its median (`errorbar` of seaborn)
RUN_BAND = ("pi", 80)
AGGREGATED = "runs drawn as each group's median, shaded where 80% of its runs lie"
#: a group of 2 to MAX_RUN_LINES runs (a study's seeds of one variant) is drawn as its mean
#: over its runs, shaded one standard error either side: the figure answers "how does this
#: variant train", not "where did each seed go". (Not the 95% interval: at 2 seeds its t
#: quantile, 12.7, shades every panel whole; the study's own figures and tests give the
#: intervals.)
SEEDS_AGGREGATED = "each group drawn as the mean over its runs, shaded: +-1 standard error"


def many_runs(data):
    """Whether a group of `data` (columns `group`, `run`) has more than MAX_RUN_LINES runs."""
    return len(data) > 0 and int(data.groupby("group")["run"].nunique().max()) > MAX_RUN_LINES


def seeded(data):
    """Whether every group of `data` has 2 runs or more (seeds) and none more than
    MAX_RUN_LINES: drawn as each group's mean (`SEEDS_AGGREGATED`)."""
    if not len(data):
        return False
    counts = data.groupby("group")["run"].nunique()
    return int(counts.min()) >= 2 and int(counts.max()) <= MAX_RUN_LINES


def standard_error_band(values, bounds=(-np.inf, np.inf)):
    """(low, high): the mean of `values` +- one standard error (seaborn's `errorbar`), kept
    within the quantity's `bounds` (a drift is never below 0, an accuracy within [0, 1])."""
    values = np.asarray(values, dtype=float)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, mean
    half = float(values.std(ddof=1) / np.sqrt(len(values)))
    return max(mean - half, bounds[0]), min(mean + half, bounds[1])


def _ax(ax, width=4.0, height=3.0):
    """The given Axes, or one on a new Figure (seaborn's ax=None)."""
    if ax is not None:
        return ax
    return Figure(figsize=(width, height), layout="constrained").subplots()


def _runs(data, order_by, palette):
    """(run, its rows sorted by `order_by`, colour, first run of its group) per run in
    `data`, in order: for drawing by hand a line per run, coloured by group, labelled once."""
    palette = palette or palette_of(dict(zip(data.run, data.group)))
    shown = set()
    for run, line in data.groupby("run", sort=False):
        group = line.group.iloc[0]
        yield run, line.sort_values(order_by), group, palette.get(group), group not in shown
        shown.add(group)


def group_lines(data, x="epoch", y="value", ax=None, palette=None, style=None,
                bounds=(-np.inf, np.inf)):
    """A line per run (`run`), coloured by `group`, optionally dashed by `style`; groups
    of 2 to MAX_RUN_LINES runs each as their mean +- one standard error (within the
    quantity's `bounds`); a group of more than MAX_RUN_LINES runs as its median and the
    band of its runs. Integer epochs on the x axis."""
    ax = _ax(ax)
    if many_runs(data):
        sns.lineplot(data=data, x=x, y=y, hue="group", style=style, estimator="median",
                     errorbar=RUN_BAND, palette=palette, ax=ax, linewidth=1.5)
        return ax
    if seeded(data):
        sns.lineplot(data=data, x=x, y=y, hue="group", style=style, estimator=np.mean,
                     errorbar=functools.partial(standard_error_band, bounds=bounds),
                     palette=palette, ax=ax, linewidth=1.5, marker="o", markersize=3)
    else:
        sns.lineplot(data=data, x=x, y=y, hue="group", units="run", estimator=None, style=style,
                     palette=palette, ax=ax, marker="o", markersize=3, linewidth=1.2)
    if x == "epoch":
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return ax


def _medians(data, by, columns):
    """(group, its rows' median of `columns` per `by` value, 1 row per run) per group, for
    drawing a group of many runs as one line."""
    for group, part in data.groupby("group", sort=False):
        yield group, part.groupby(by)[list(columns)].median().reset_index()


def percentile_band(data, ax=None, palette=None):
    """The median (`p50`) as a line and the `p15`-`p85` band shaded over `epoch`, a line
    per `run`, a colour per `group`."""
    ax = _ax(ax)
    if many_runs(data) or seeded(data):  # each group's median run: the medians of its p15, p50 and p85
        palette = palette or palette_of(dict(zip(data.run, data.group)))
        for group, line in _medians(data, "epoch", (P15, P50, P85)):
            ax.plot(line.epoch, line.p50, color=palette.get(group), linewidth=1.5, label=group)
            ax.fill_between(line.epoch, line.p15, line.p85, color=palette.get(group), alpha=0.15)
    else:
        for _, line, group, color, first in _runs(data, "epoch", palette):
            ax.plot(line.epoch, line.p50, color=color, linewidth=1.2, label=group if first else None)
            ax.fill_between(line.epoch, line.p15, line.p85, color=color, alpha=0.15)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return ax


def ratio_lines(data, ax=None, palette=None):
    """A ratio over `epoch` on a log scale (so 0.5 and 2 sit as far from 1), with the
    reference line at 1; a line per run, a colour per group."""
    ax = group_lines(data, ax=ax, palette=palette, bounds=(0.0, np.inf))
    ax.axhline(1.0, color="black", linewidth=0.8, linestyle="--")
    ax.set_yscale("log")
    values = data.value[data.value > 0]
    if len(values):
        low, high = min(float(values.min()), 0.8), max(float(values.max()), 1.25)
        ax.set_ylim(low / 1.15, high * 1.15)
    return ax


def layer_heatmap(data, ax=None, order=None, cbar=True):
    """Layer x epoch heatmap of `value` (the mean where `data` holds several runs): one
    row per `layer`, or per layer of `order` (blank rows where `data` has none)."""
    grid = data.pivot_table(index="layer", columns="epoch", values="value")
    if order is not None:  # every row of `order`, blank where this measure has none,
        grid = grid.reindex(list(order))  # so that panels side by side line up
    ax = _ax(ax, height=0.2 * len(grid) + 1)
    sns.heatmap(grid, ax=ax, cmap="viridis", cbar=cbar, annot=False,
                yticklabels=True, cbar_kws={"shrink": 0.8} if cbar else None)
    ax.set_ylabel("")
    return ax


def final_bars(data, ax=None, palette=None, order=None):
    """Horizontal bars of `value` per `layer`, the mean over each `group`'s runs, the
    whisker spanning its runs."""
    ax = _ax(ax)
    sns.barplot(data=data, y="layer", x="value", hue="group", palette=palette, ax=ax,
                order=order, errorbar=("pi", 100))
    ax.set_ylabel("")
    return ax


def ensemble_curve(data, deterministic=None, ax=None, palette=None):
    """Accuracy `value` of the mean of `k` dropout samples against k (log2 axis), a line per
    run; dashed, each run's weight-scaled accuracy (`deterministic`: run, group, value)."""
    ax = _ax(ax, 6.4, 3.8)
    if many_runs(data):
        _ensemble_medians(data, deterministic, ax, palette)
    for run, line, group, color, first in ([] if many_runs(data) else _runs(data, "k", palette)):
        ax.plot(line.k, line.value, marker="o", color=color,
                label=f"{group}: MC average of k" if first else None)
        if deterministic is not None:
            det = deterministic[deterministic.run == run]
            if len(det):
                ax.axhline(float(det.value.iloc[-1]), color=color, linestyle="--", linewidth=1,
                           label=f"{group}: weight-scaled" if first else None)
    ax.set_xscale("log", base=2)
    ks = sorted(set(data.k))
    ax.set_xticks(ks, labels=[str(k) for k in ks])
    ax.set_xlabel("k, dropout samples averaged" + (f"\n({AGGREGATED})" if many_runs(data) else ""))
    ax.set_ylabel("probe accuracy")
    return ax




def _ensemble_medians(data, deterministic, ax, palette):
    """`ensemble_curve` for groups of many runs: each group's median accuracy against k
    with the band of its runs, its runs' median weight-scaled accuracy dashed."""
    palette = palette or palette_of(dict(zip(data.run, data.group)))
    sns.lineplot(data=data, x="k", y="value", hue="group", estimator="median", errorbar=RUN_BAND,
                 palette=palette, ax=ax, marker="o", legend=False)
    for group, part in data.groupby("group", sort=False):
        ax.plot([], [], marker="o", color=palette.get(group), label=f"{group}: MC average of k")
        if deterministic is None:
            continue
        last = deterministic[deterministic.run.isin(set(part.run))].groupby("run")["value"].last()
        if len(last):
            ax.axhline(float(last.median()), color=palette.get(group), linestyle="--", linewidth=1,
                       label=f"{group}: weight-scaled")
