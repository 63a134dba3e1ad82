"""Figures of regaudit measures. Each function takes a `RunSet` (tidy long-form tables)
and the run -> label mapping, and returns a matplotlib Figure, or None when its data is
missing. Figures are built with the object-oriented API (`matplotlib.figure.Figure`,
seaborn's axes-level functions), never pyplot's global state, so a report can render in
a background thread at train end."""

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from regaudit.schema import MODEL

#: at most this many runs get per-run panels (heatmaps); the rest are in the line plots
MAX_PANEL_RUNS = 8
#: layer panels per figure row
COLUMNS = 4

#: local styling only: importing this module must not restyle the user's own plots
RC = {"axes.grid": True, "grid.alpha": 0.3, "font.size": 8, "axes.titlesize": 9,
      "axes.labelsize": 8, "xtick.labelsize": 7, "ytick.labelsize": 7, "legend.fontsize": 6}


def _figure(panels, width=3.4, height=2.6, columns=COLUMNS):
    columns = max(1, min(columns, panels))
    rows = int(np.ceil(panels / columns))
    figure = Figure(figsize=(width * columns, height * rows), layout="constrained")
    axes = np.atleast_1d(figure.subplots(rows, columns, squeeze=False).ravel())
    for ax in axes[panels:]:
        ax.set_visible(False)
    return figure, axes[:panels]


def _labelled(frame, labels):
    frame = frame.copy()
    frame["run_label"] = frame["run"].map(labels)
    return frame


def _layer_order(runs, frame):
    """Layers in graph order (the model.json order of the first run holding them)."""
    order = list(dict.fromkeys(runs.layers["name"])) if len(runs.layers) else []
    present = list(dict.fromkeys(frame["layer"]))
    return [l for l in order if l in present] + [l for l in present if l not in order]


def learning_curves(runs, labels):
    """Loss and accuracy per epoch (train solid, validation dashed), and the
    generalization gap (validation loss - training loss) per epoch."""
    history = runs.history
    if not len(history):
        return None
    history = _labelled(history, labels)
    pairs = [("loss", "val_loss"), ("accuracy", "val_accuracy")]
    pairs = [p for p in pairs if p[0] in set(history.measure)]
    figure, axes = _figure(len(pairs) + 1, width=4.2, height=3.0, columns=3)
    for ax, (train, val) in zip(axes, pairs):
        part = history[history.measure.isin([train, val])].copy()
        part["split"] = np.where(part.measure == train, "train", "validation")
        sns.lineplot(data=part, x="epoch", y="value", hue="run_label", style="split",
                     ax=ax, marker="o", markersize=4, errorbar=None)
        ax.set_title(train)
        ax.set_ylabel(train)
        ax.legend(fontsize=6)
    wide = history.pivot_table(index=["run", "run_label", "epoch"], columns="measure",
                               values="value").reset_index()
    ax = axes[-1]
    if {"loss", "val_loss"} <= set(wide.columns):
        wide["gap"] = wide["val_loss"] - wide["loss"]
        sns.lineplot(data=wide, x="epoch", y="gap", hue="run_label", ax=ax, marker="o",
                     markersize=4, errorbar=None)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_title("generalization gap (val_loss - loss)")
        ax.legend(fontsize=6)
    else:
        ax.set_visible(False)
    return figure


def activation_heatmaps(runs, labels, measures=("mean", "std", "dead_frac")):
    """Layer x epoch heatmaps of activation statistics, one row per run (at most
    MAX_PANEL_RUNS runs), one column per measure."""
    acts = runs.activations
    acts = acts[(acts.layer != MODEL) & acts.measure.isin(measures)]
    if not len(acts):
        return None
    run_ids = [r for r in runs.run_ids if r in set(acts.run)][:MAX_PANEL_RUNS]
    measures = [m for m in measures if m in set(acts.measure)]
    order = _layer_order(runs, acts)
    figure = Figure(figsize=(3.6 * len(measures), 0.28 * len(order) * len(run_ids) + 1.2 * len(run_ids)),
                    layout="constrained")
    axes = figure.subplots(len(run_ids), len(measures), squeeze=False)
    for row, run in enumerate(run_ids):
        for col, measure in enumerate(measures):
            part = acts[(acts.run == run) & (acts.measure == measure)]
            grid = part.pivot_table(index="layer", columns="epoch", values="value").reindex(
                [l for l in order if l in set(part.layer)])
            ax = axes[row, col]
            sns.heatmap(grid, ax=ax, cmap="viridis", cbar=True, annot=False,
                        cbar_kws={"shrink": 0.8})
            ax.set_title(f"{labels.get(run, run)}: {measure}", fontsize=8)
            ax.set_xlabel("epoch")
            ax.set_ylabel("")
    return figure


def percentile_bands(runs, labels):
    """p15 / p50 / p85 of each layer's activations over training, as in Ioffe &
    Szegedy's Figure 1: the median as a line, the 15-85 band shaded, one panel per
    layer, one colour per run."""
    acts = runs.activations
    acts = acts[(acts.layer != MODEL) & acts.measure.isin(["p15", "p50", "p85"])]
    if not len(acts):
        return None
    wide = acts.pivot_table(index=["run", "layer", "epoch"], columns="measure",
                            values="value").reset_index()
    order = _layer_order(runs, wide)
    figure, axes = _figure(len(order))
    palette = sns.color_palette(n_colors=max(1, len(runs.run_ids)))
    for ax, layer in zip(axes, order):
        part = wide[wide.layer == layer]
        for color, run in zip(palette, runs.run_ids):
            line = part[part.run == run].sort_values("epoch")
            if not len(line):
                continue
            ax.plot(line.epoch, line.p50, color=color, label=labels.get(run, run), linewidth=1.2)
            ax.fill_between(line.epoch, line.p15, line.p85, color=color, alpha=0.18)
        ax.set_title(layer, fontsize=8)
        ax.set_xlabel("epoch")
    axes[0].legend(fontsize=6)
    return figure


def dead_and_saturated(runs, labels):
    """Per layer at the last audit: the fraction of dead units (and of saturated values
    for sigmoid/tanh layers), one bar per run."""
    acts = runs.activations
    acts = acts[(acts.layer != MODEL) & acts.measure.isin(["dead_frac", "sat_frac"])]
    if not len(acts):
        return None
    last = acts.groupby("run")["epoch"].transform("max")
    final = _labelled(acts[acts.epoch == last], labels)
    measures = [m for m in ("dead_frac", "sat_frac") if m in set(final.measure)]
    figure, axes = _figure(len(measures), width=6.0, height=3.2, columns=2)
    for ax, measure in zip(axes, measures):
        part = final[final.measure == measure]
        sns.barplot(data=part, y="layer", x="value", hue="run_label", ax=ax,
                    order=_layer_order(runs, part), errorbar=None)
        ax.set_xlim(0, max(0.05, float(part.value.max()) * 1.1))
        ax.set_title(f"{measure} at the last audit")
        ax.legend(fontsize=6)
    return figure


def drift_per_layer(runs, labels):
    """drift_w1 (W1 between consecutive audits over the earlier std) per layer over
    training, one panel per layer, one line per run."""
    shift = runs.shift
    part = shift[(shift.measure == "drift_w1") & (shift.layer != MODEL)]
    if not len(part):
        return None
    part = _labelled(part, labels)
    order = _layer_order(runs, part)
    figure, axes = _figure(len(order))
    for ax, layer in zip(axes, order):
        sns.lineplot(data=part[part.layer == layer], x="epoch", y="value", hue="run_label",
                     ax=ax, marker="o", markersize=3, errorbar=None, legend=ax is axes[0])
        ax.set_title(layer, fontsize=8)
        ax.set_ylabel("drift_w1")
    if axes[0].get_legend() is not None:
        axes[0].legend(fontsize=6)
    return figure


def batchnorm_shift(runs, labels):
    """bn_var_ratio (observed input variance / moving variance) and bn_dropout_var_ratio
    (variance with upstream Dropout on / without) per BN layer over training."""
    shift = runs.shift
    part = shift[shift.measure.isin(["bn_var_ratio", "bn_dropout_var_ratio"])]
    if not len(part):
        return None
    part = _labelled(part, labels)
    part["series"] = part["run_label"] + " / " + part["layer"]
    measures = [m for m in ("bn_var_ratio", "bn_dropout_var_ratio") if m in set(part.measure)]
    figure, axes = _figure(len(measures), width=5.2, height=3.2, columns=2)
    for ax, measure in zip(axes, measures):
        sns.lineplot(data=part[part.measure == measure], x="epoch", y="value", hue="series",
                     ax=ax, marker="o", markersize=3, errorbar=None)
        ax.axhline(1.0, color="black", linewidth=0.8, linestyle="--")
        ax.set_title(measure)
        ax.legend(fontsize=6)
    return figure


def acc_at_k(runs, labels):
    """Accuracy of the mean of k Monte-Carlo dropout samples against k at each run's last
    audit (Srivastava et al. 2014, Fig. 11), with the deterministic weight-scaled network
    as a dashed line of the same colour."""
    ens = runs.ensemble
    part = ens[(ens.layer == MODEL) & ens.measure.str.startswith("acc_at_k:")]
    if not len(part):
        return None
    last = part.groupby("run")["epoch"].transform("max")
    part = part[part.epoch == last].copy()
    part["k"] = part.measure.str.split(":").str[1].astype(int)
    det = ens[(ens.layer == MODEL) & (ens.measure == "det_acc")]
    figure = Figure(figsize=(6.0, 3.8), layout="constrained")
    ax = figure.subplots()
    palette = sns.color_palette(n_colors=max(1, len(runs.run_ids)))
    for color, run in zip(palette, runs.run_ids):
        line = part[part.run == run].sort_values("k")
        if not len(line):
            continue
        ax.plot(line.k, line.value, marker="o", color=color, label=f"{labels.get(run, run)}: MC average")
        det_run = det[det.run == run].sort_values("epoch")
        if len(det_run):
            ax.axhline(det_run.value.iloc[-1], color=color, linestyle="--", linewidth=1,
                       label=f"{labels.get(run, run)}: weight-scaled")
    ax.set_xscale("log", base=2)
    ks = sorted(set(part.k))
    ax.set_xticks(ks, labels=[str(k) for k in ks])
    ax.set_xlabel("k, dropout samples averaged")
    ax.set_ylabel("probe accuracy")
    ax.set_title("Dropout ensemble against the weight-scaled network")
    ax.legend(fontsize=6, loc="lower right")
    return figure
