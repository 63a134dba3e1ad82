"""Figures of regaudit measures. Each function takes a `RunSet` (tidy long-form tables),
the run -> label mapping and the run -> group mapping, and returns a matplotlib Figure,
or None when its data is missing. Colour is the group (the regularization setup by
default), one line per run. Figures are built with the object-oriented API
(`matplotlib.figure.Figure`, seaborn's axes-level functions), never pyplot's global
state, so a report can render in a background thread at train end."""

import numpy as np
import seaborn as sns
from matplotlib.figure import Figure

from regaudit.schema import MODEL, evenly_spaced

#: at most this many runs get per-run panels (heatmaps); the rest are in the line plots
MAX_PANEL_RUNS = 8
#: a large model's per-layer figures show at most this many layers, evenly spaced along
#: the graph (first and last included); every layer stays in the tables
MAX_LAYER_PANELS = 32
#: rows of a layer x epoch heatmap
MAX_HEATMAP_LAYERS = 64
#: layer panels per figure row
COLUMNS = 4

#: local styling only: importing this module must not restyle the user's own plots
RC = {"axes.grid": True, "grid.alpha": 0.3, "font.size": 8, "axes.titlesize": 9,
      "axes.labelsize": 8, "xtick.labelsize": 7, "ytick.labelsize": 7, "legend.fontsize": 7}


def _figure(panels, width=3.4, height=2.6, columns=COLUMNS):
    columns = max(1, min(columns, panels))
    rows = int(np.ceil(panels / columns))
    figure = Figure(figsize=(width * columns, height * rows), layout="constrained")
    axes = np.atleast_1d(figure.subplots(rows, columns, squeeze=False).ravel())
    for ax in axes[panels:]:
        ax.set_visible(False)
    return figure, axes[:panels]


def _grouped(frame, labels, groups):
    frame = frame.copy()
    frame["run_label"] = frame["run"].map(labels)
    frame["group"] = frame["run"].map(groups).fillna("(none)")
    return frame


def _palette(groups):
    names = list(dict.fromkeys(groups.values())) or ["(none)"]
    return dict(zip(names, sns.color_palette(n_colors=len(names))))


def _shared_legend(figure, axes, title="group"):
    """One legend for the figure, outside the panels, built from the first axes."""
    handles, texts = axes[0].get_legend_handles_labels()
    for ax in axes:
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    if handles:
        figure.legend(handles, texts, loc="outside right upper", title=None, frameon=False)


def _per_run(runs, frame, order_by, groups, palette):
    """(that run's rows sorted by `order_by`, group, colour, first run of its group) per
    run with rows, in run order: for drawing by hand a line per run, coloured by group."""
    shown = set()
    for run in runs.run_ids:
        line = frame[frame.run == run].sort_values(order_by)
        if not len(line):
            continue
        group = groups.get(run, "(none)")
        yield line, group, palette.get(group), group not in shown
        shown.add(group)


def _lines(ax, data, y, palette, style=None):
    sns.lineplot(data=data, x="epoch", y=y, hue="group", units="run", estimator=None,
                 style=style, palette=palette, ax=ax, marker="o", markersize=3, linewidth=1.2)


def _note_cap(figure, shown, order):
    """Say in the figure's title when it shows only some of the layers."""
    if len(shown) < len(order):
        figure.suptitle(f"{len(shown)} of {len(order)} layers, evenly spaced along the graph "
                        "(every layer is in the layer table and the Parquet tables)", fontsize=8)


def _layer_order(runs, frame):
    """The layers of `frame` in graph order: every run's model.json order merged, a
    layer only one model has placed after its predecessor in that model."""
    order = []
    layers = runs.layers
    for run in runs.run_ids:
        names = list(layers[layers.run == run]["name"]) if len(layers) else []
        for i, name in enumerate(names):
            if name in order:
                continue
            previous = next((names[j] for j in range(i - 1, -1, -1) if names[j] in order), None)
            order.insert(order.index(previous) + 1 if previous is not None else 0, name)
    present = list(dict.fromkeys(frame["layer"]))
    return [l for l in order if l in present] + [l for l in present if l not in order]


def learning_curves(runs, labels, groups):
    """Loss and accuracy per epoch (training solid, validation dashed) and the
    generalization gap (validation loss - training loss), a line per run."""
    history = runs.history
    if not len(history):
        return None
    history = _grouped(history, labels, groups)
    palette = _palette(groups)
    pairs = [p for p in (("loss", "val_loss"), ("accuracy", "val_accuracy"))
             if p[0] in set(history.measure)]
    figure, axes = _figure(len(pairs) + 1, width=3.8, height=3.0, columns=3)
    for ax, (train, val) in zip(axes, pairs):
        part = history[history.measure.isin([train, val])].copy()
        part["split"] = np.where(part.measure == train, "train", "validation")
        _lines(ax, part, "value", palette, style="split")
        ax.set_title(train)
        ax.set_ylabel(train)
    wide = history.pivot_table(index=["run", "group", "epoch"], columns="measure",
                               values="value").reset_index()
    ax = axes[-1]
    if {"loss", "val_loss"} <= set(wide.columns):
        wide["gap"] = wide["val_loss"] - wide["loss"]
        _lines(ax, wide, "gap", palette)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_title("generalization gap (val_loss - loss)")
    else:
        ax.set_visible(False)
    _shared_legend(figure, axes)
    return figure


def activation_heatmaps(runs, labels, groups, measures=("mean", "std", "dead_frac")):
    """Layer x epoch heatmaps of activation statistics, one row per run (the first run
    of each group when runs are grouped; at most MAX_PANEL_RUNS rows), one column per
    measure."""
    acts = runs.activations
    acts = acts[(acts.layer != MODEL) & acts.measure.isin(measures)]
    if not len(acts):
        return None
    present = [r for r in runs.run_ids if r in set(acts.run)]
    if groups:
        firsts = {}
        for run in present:
            firsts.setdefault(groups.get(run), run)
        present = list(firsts.values())
    run_ids = present[:MAX_PANEL_RUNS]
    measures = [m for m in measures if m in set(acts.measure)]
    order = evenly_spaced(_layer_order(runs, acts), MAX_HEATMAP_LAYERS)
    height = 0.22 * len(order) + 0.9
    figure = Figure(figsize=(3.6 * len(measures), height * len(run_ids)))
    axes = figure.subplots(len(run_ids), len(measures), squeeze=False)
    for row, run in enumerate(run_ids):
        for col, measure in enumerate(measures):
            part = acts[(acts.run == run) & (acts.measure == measure)]
            grid = part.pivot_table(index="layer", columns="epoch", values="value").reindex(
                [l for l in order if l in set(part.layer)])
            ax = axes[row, col]
            sns.heatmap(grid, ax=ax, cmap="viridis", cbar=True, annot=False)
            ax.set_title(f"{labels.get(run, run)}: {measure}", fontsize=8)
            ax.set_xlabel("epoch" if row == len(run_ids) - 1 else "")
            ax.set_ylabel("")
    figure.subplots_adjust(left=0.16, right=0.97, top=1 - 0.35 / (height * len(run_ids)),
                           bottom=0.45 / (height * len(run_ids)), wspace=0.55, hspace=0.45)
    return figure


def percentile_bands(runs, labels, groups):
    """p15 / p50 / p85 of each layer's activations over training, as in Ioffe &
    Szegedy's Figure 1: the median as a line, the 15-85 band shaded, one panel per
    layer, a colour per group, a line per run."""
    acts = runs.activations
    acts = acts[(acts.layer != MODEL) & acts.measure.isin(["p15", "p50", "p85"])]
    if not len(acts):
        return None
    wide = acts.pivot_table(index=["run", "layer", "epoch"], columns="measure",
                            values="value").reset_index()
    order = _layer_order(runs, wide)
    shown = evenly_spaced(order, MAX_LAYER_PANELS)
    palette = _palette(groups)
    figure, axes = _figure(len(shown))
    _note_cap(figure, shown, order)
    for ax, layer in zip(axes, shown):
        for line, group, color, first in _per_run(runs, wide[wide.layer == layer], "epoch",
                                                  groups, palette):
            ax.plot(line.epoch, line.p50, color=color, linewidth=1.2,
                    label=group if first else None)
            ax.fill_between(line.epoch, line.p15, line.p85, color=color, alpha=0.15)
        ax.set_title(layer, fontsize=8)
        ax.set_xlabel("epoch")
    _shared_legend(figure, axes)
    return figure


def dead_and_saturated(runs, labels, groups):
    """Per layer at the last audit: the fraction of dead units (and of saturated values
    for sigmoid/tanh layers), the mean over each group's runs with their spread."""
    acts = runs.activations
    acts = acts[(acts.layer != MODEL) & acts.measure.isin(["dead_frac", "sat_frac"])]
    if not len(acts):
        return None
    last = acts.groupby("run")["epoch"].transform("max")
    final = _grouped(acts[acts.epoch == last], labels, groups)
    worst = final.groupby("layer")["value"].max().nlargest(MAX_LAYER_PANELS)
    capped = final.layer.nunique() > MAX_LAYER_PANELS
    final = final[final.layer.isin(worst.index)]
    measures = [m for m in ("dead_frac", "sat_frac") if m in set(final.measure)]
    figure, axes = _figure(len(measures), width=5.0, height=0.25 * len(set(final.layer)) + 1.6,
                           columns=2)
    for ax, measure in zip(axes, measures):
        part = final[final.measure == measure]
        sns.barplot(data=part, y="layer", x="value", hue="group", palette=_palette(groups),
                    ax=ax, order=_layer_order(runs, part), errorbar=("pi", 100))
        ax.set_xlim(0, max(0.05, float(part.value.max()) * 1.15))
        ax.set_title(f"{measure} at the last audit"
                     + (f" ({MAX_LAYER_PANELS} layers with the largest values)" if capped else ""))
        ax.set_ylabel("")
    _shared_legend(figure, axes)
    return figure


def drift_per_layer(runs, labels, groups):
    """drift_w1 (W1 between consecutive audits over the earlier std) per layer over
    training, one panel per layer, a line per run."""
    shift = runs.shift
    part = shift[(shift.measure == "drift_w1") & (shift.layer != MODEL)]
    if not len(part):
        return None
    part = _grouped(part, labels, groups)
    palette = _palette(groups)
    order = _layer_order(runs, part)
    shown = evenly_spaced(order, MAX_LAYER_PANELS)
    figure, axes = _figure(len(shown))
    _note_cap(figure, shown, order)
    for ax, layer in zip(axes, shown):
        _lines(ax, part[part.layer == layer], "value", palette)
        ax.set_title(layer, fontsize=8)
        ax.set_ylabel("drift_w1")
    _shared_legend(figure, axes)
    return figure


def batchnorm_shift(runs, labels, groups):
    """bn_var_ratio (observed input variance / moving variance) and
    bn_dropout_var_ratio (variance with upstream Dropout on / without) over training:
    a panel per BN layer and measure, a line per run."""
    shift = runs.shift
    part = shift[shift.measure.isin(["bn_var_ratio", "bn_dropout_var_ratio"])]
    if not len(part):
        return None
    part = _grouped(part, labels, groups)
    palette = _palette(groups)
    order = _layer_order(runs, part)
    shown = evenly_spaced(order, MAX_LAYER_PANELS // 2)
    panels = [(layer, measure) for measure in ("bn_var_ratio", "bn_dropout_var_ratio")
              for layer in shown
              if len(part[(part.layer == layer) & (part.measure == measure)])]
    figure, axes = _figure(len(panels))
    _note_cap(figure, shown, order)
    for ax, (layer, measure) in zip(axes, panels):
        _lines(ax, part[(part.layer == layer) & (part.measure == measure)], "value", palette)
        ax.axhline(1.0, color="black", linewidth=0.8, linestyle="--")
        ax.set_title(f"{layer}: {measure}", fontsize=8)
        ax.set_ylabel(measure)
    _shared_legend(figure, axes)
    return figure


def acc_at_k(runs, labels, groups):
    """Accuracy of the mean of k Monte-Carlo dropout samples against k at each run's last
    audit (Srivastava et al. 2014, Fig. 11); dashed, the weight-scaled network of that
    run; a colour per group."""
    ens = runs.ensemble
    part = ens[(ens.layer == MODEL) & ens.measure.str.startswith("acc_at_k:")]
    if not len(part):
        return None
    last = part.groupby("run")["epoch"].transform("max")
    part = part[part.epoch == last].copy()
    part["k"] = part.measure.str.split(":").str[1].astype(int)
    det = ens[(ens.layer == MODEL) & (ens.measure == "det_acc")]
    palette = _palette(groups)
    figure = Figure(figsize=(6.4, 3.8), layout="constrained")
    ax = figure.subplots()
    for line, group, color, first in _per_run(runs, part, "k", groups, palette):
        ax.plot(line.k, line.value, marker="o", color=color,
                label=f"{group}: MC average of k" if first else None)
        det_run = det[det.run == line.run.iloc[0]].sort_values("epoch")
        if len(det_run):
            ax.axhline(det_run.value.iloc[-1], color=color, linestyle="--", linewidth=1,
                       label=f"{group}: weight-scaled" if first else None)
    ax.set_xscale("log", base=2)
    ks = sorted(set(part.k))
    ax.set_xticks(ks, labels=[str(k) for k in ks])
    ax.set_xlabel("k, dropout samples averaged")
    ax.set_ylabel("probe accuracy")
    ax.set_title("Dropout ensemble against the weight-scaled network")
    figure.legend(loc="outside right upper", frameon=False)
    return figure
