"""The figures of a study (runs with the level params `study.<factor>` a study trial logs):
the dose-response of the outcome and the generalization gap against the dropout rate per
BatchNormalization setting, the Dropout x BN grid, and the learning-rate tolerance with
and without BN. Each point is a variant's mean over its seeds with its 95% t-interval,
kept within the quantity's bounds (`statistics.bounded_interval`); None without the
levels a figure needs."""

import numpy as np
from matplotlib.figure import Figure

from regaudit.answer.outcomes import GEN_GAP_ACC
from regaudit.answer import outcomes
from regaudit.answer.outcomes import STUDY_PARAM
from regaudit.answer.statistics import bounded_interval

BN_ORDER = ("none", "after", "before")


def _levels(runs):
    """A frame: run, dropout, bn, lr (NaN/"" where the variant leaves it as given), other
    (the variant sets another factor)."""
    import pandas as pd

    rows = []
    for run, params in zip(runs.runs["run"], runs.runs["params"]):
        own = {k[len(STUDY_PARAM):]: v for k, v in (params or {}).items() if str(k).startswith(STUDY_PARAM)}
        rows.append({"run": run, "dropout": float(own["dropout"]) if "dropout" in own else np.nan,
                     "bn": own.get("bn", ""), "lr": float(own.get("lr", 1.0)),
                     "other": any(k not in ("dropout", "bn", "lr") for k in own)})
    return pd.DataFrame(rows)


def _points(frame, values, x, hue, bounds):
    """{hue level: [(x, mean, low, high, n)]} over runs with a value."""
    out = {}
    for (level, position), part in frame.groupby([hue, x], sort=True):
        found = [values[r] for r in part.run if r in values]
        if found:
            mean, low, high = bounded_interval(found, bounds)
            out.setdefault(level, []).append((position, mean, low, high, len(found)))
    return out


def _draw(ax, points, palette, label_of=str):
    for index, (level, rows) in enumerate(points.items()):
        xs, means, lows, highs, _ = map(np.array, zip(*sorted(rows)))
        errors = np.vstack([means - np.where(np.isfinite(lows), lows, means),
                            np.where(np.isfinite(highs), highs, means) - means])
        ax.errorbar(xs, means, yerr=errors, marker="o", capsize=3, label=label_of(level),
                    color=palette[index % len(palette)])


def _palette(n):
    import seaborn as sns

    return sns.color_palette("colorblind", max(n, 3))


def _outcome_and_gap(runs):
    measure, values, higher, bounds = outcomes.outcome(runs)
    gap_name, gaps = outcomes.final_gap(runs)
    return (measure, values, bounds), (gap_name, gaps, (-1.0, 1.0) if gap_name == GEN_GAP_ACC else (-np.inf, np.inf))


def dose_response(runs, labels, groups):
    """Outcome and generalization gap against the dropout rate, a line per BN setting
    (variants that set only dropout and bn, at the model's learning rate)."""
    frame = _levels(runs)
    frame = frame[frame.dropout.notna() & ~frame.other & (frame.lr == 1.0)]
    if frame.dropout.nunique() < 2:
        return None
    frame = frame.assign(bn=frame.bn.replace("", "as given"))
    measures = [m for m in _outcome_and_gap(runs) if m[0] is not None and m[1]]
    figure = Figure(figsize=(4.2 * len(measures), 3.2), layout="constrained")
    axes = np.atleast_1d(figure.subplots(1, len(measures)))
    for ax, (name, values, bounds) in zip(axes, measures):
        points = _points(frame, values, "dropout", "bn", bounds)
        _draw(ax, dict(sorted(points.items(), key=lambda kv: _bn_rank(kv[0]))), _palette(len(points)),
              lambda level: f"BN {level}")
        ax.set_xlabel("dropout rate")
        ax.set_ylabel(name)
        ax.set_title(f"{name} against the dropout rate")
        if name.startswith("gen_gap"):
            ax.axhline(0, color="black", linewidth=0.8)
    axes[0].legend(title="BatchNormalization")
    return figure


def _bn_rank(level):
    return BN_ORDER.index(level) if level in BN_ORDER else len(BN_ORDER)


def batchnorm_grid(runs, labels, groups):
    """The outcome per BN setting (none / after / before the activation), a line per
    dropout rate: the Dropout x BN grid of the article's design."""
    frame = _levels(runs)
    frame = frame[(frame.bn != "") & ~frame.other & (frame.lr == 1.0)]
    if frame.bn.nunique() < 2:
        return None
    frame = frame.assign(position=frame.bn.map(_bn_rank),
                         rate=frame.dropout.map(lambda r: "as given" if np.isnan(r) else f"{r:g}"))
    measure, values, _, bounds = outcomes.outcome(runs)
    points = _points(frame, values, "position", "rate", bounds)
    figure = Figure(figsize=(4.4, 3.2), layout="constrained")
    ax = figure.subplots()
    _draw(ax, points, _palette(len(points)), lambda level: f"dropout {level}")
    shown = sorted(frame.position.unique())
    ax.set_xticks(shown, [BN_ORDER[i] if i < len(BN_ORDER) else "?" for i in shown])
    ax.set_xlabel("BatchNormalization")
    ax.set_ylabel(measure)
    ax.set_title(f"{measure} by BatchNormalization setting")
    ax.legend(title="Dropout")
    return figure


def learning_rate_tolerance(runs, labels, groups):
    """The outcome against the learning-rate factor, with and without BN."""
    frame = _levels(runs)
    frame = frame[~frame.other & (frame.bn != "")]
    frame = frame.assign(setting=np.where(frame.bn == "none", "without BN", "with BN"))
    if frame.lr.nunique() < 2:
        return None
    measure, values, _, bounds = outcomes.outcome(runs)
    rates = frame.groupby("setting").dropout.agg(lambda r: set(np.round(r, 6)))
    common = set.intersection(*rates) if len(rates) else set()
    frame = frame[frame.dropout.round(6).isin(common)]  # the same dropout with and without BN
    points = _points(frame, values, "lr", "setting", bounds)
    if not points:
        return None
    figure = Figure(figsize=(4.4, 3.2), layout="constrained")
    ax = figure.subplots()
    _draw(ax, points, _palette(len(points)))
    ax.set_xscale("log")
    ax.set_xlabel("learning rate x factor")
    ax.set_ylabel(measure)
    ax.set_title("learning-rate tolerance")
    ax.legend()
    return figure
