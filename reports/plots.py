"""Figures of regaudit measures, in two layers as seaborn has them.

Axes-level functions (`regaudit.reports.axes`, re-exported here) take tidy data and
`ax=None` and return the Axes they drew on (`group_lines`, `percentile_band`, `ratio_lines`, `layer_heatmap`, `final_bars`,
`ensemble_curve`); each is tested on a tiny frame. Figure functions take a `RunSet`, the
run -> label and run -> group mappings, lay out panels and return a matplotlib Figure, or
None when their data is missing. Colour is the group (the regularization setup by
default), one line per run; panel titles name layers ("layer dense"), the legend names
groups ("group"). Layers that repeat their input at inference (Flatten, Reshape, Dropout
and the other noise layers) are left out of per-layer panels and named in the title.
Figures use the object-oriented API (`matplotlib.figure.Figure`), never pyplot's global
state, so a report can render in a background thread at train end."""

import numpy as np
from matplotlib.figure import Figure

from regaudit.measures.activations import DEAD_FRAC, MEAN, P15, P50, P85, SAT_FRAC, STD
from regaudit.measures.ensemble import ACC_AT_K, DET_ACC
from regaudit.measures.registry import prefix
from regaudit.measures.shift import BN_DROPOUT_VAR_RATIO, BN_VAR_RATIO, DRIFT_W1
from regaudit.answer import outcomes
from regaudit.reports.axes import (  # noqa: F401 - the axes-level functions, re-exported
    AGGREGATED, SEEDS_AGGREGATED, ensemble_curve, final_bars, group_lines, layer_heatmap, many_runs,
    palette_of, percentile_band, ratio_lines, seeded)
from regaudit.schema import MODEL, evenly_spaced
from regaudit.model.tags import repeats_input

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
    return palette_of(groups)


def _shared_legend(figure, axes, title="group"):
    """One legend for the figure, outside the panels, built from the first axes."""
    handles, texts = axes[0].get_legend_handles_labels()
    for ax in axes:
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    if handles:
        figure.legend(handles, texts, loc="outside right upper", title=None, frameon=False)


# --- figures: a RunSet in, panels laid out, a Figure out -------------------------------

def _layer_order(runs, frame):
    """The layers of `frame` in graph order: every run's model.json order merged, a
    layer only one model has placed after its predecessor in that model."""
    order = []
    layers = runs.layers
    by_run = {run: list(part["name"]) for run, part in layers.groupby("run", sort=False)} if len(layers) else {}
    for names in dict.fromkeys(tuple(by_run.get(run, ())) for run in runs.run_ids):  # each model once
        for i, name in enumerate(names):
            if name in order:
                continue
            previous = next((names[j] for j in range(i - 1, -1, -1) if names[j] in order), None)
            order.insert(order.index(previous) + 1 if previous is not None else 0, name)
    present = list(dict.fromkeys(frame["layer"]))
    return [l for l in order if l in present] + [l for l in present if l not in order]



def _identity_layers(runs, frame):
    """The layers of `frame` that repeat their input at inference (`setup.repeats_input`)."""
    return identity_layers(runs, set(frame.layer), dict(zip(frame.layer, frame.layer_class))
                           if "layer_class" in frame else {})


def identity_layers(runs, names, classes=None):
    """Of `names`, the layers whose inference output repeats their input."""
    classes = dict(classes or {})
    regularizers = {}
    layers = runs.layers
    if len(layers):
        classes.update(zip(layers.name, layers.layer_class))
        if "regularizer" in layers:
            regularizers = dict(zip(layers.name, layers.regularizer))
    return {name for name in names if repeats_input(classes.get(name), regularizers.get(name))}


def _panel_layers(runs, frame, cap=MAX_LAYER_PANELS):
    """(layers shown, every layer in order, identity layers left out)."""
    identity = _identity_layers(runs, frame)
    order = [layer for layer in _layer_order(runs, frame) if layer not in identity]
    return evenly_spaced(order, cap), order, sorted(identity & set(frame.layer))


def _title_notes(figure, shown, order, identity, data=None, aggregated=AGGREGATED,
                 seeds=SEEDS_AGGREGATED):
    """The figure's title: how many layers it shows, which identity layers it left out,
    and how groups of several runs are drawn (`aggregated` for many runs, `seeds` for 2
    to 12 each, when `data` has such groups)."""
    notes = ([aggregated] if data is not None and many_runs(data) else
             [seeds] if data is not None and seeded(data) else [])
    if len(shown) < len(order):
        notes.append(f"{len(shown)} of {len(order)} layers, evenly spaced along the graph "
                     "(every layer is in the layer table and the Parquet tables)")
    if identity:
        names = ", ".join(identity[:6]) + (", ..." if len(identity) > 6 else "")
        notes.append(f"left out, as they repeat their input at inference: {names}")
    if notes:
        figure.suptitle("; ".join(notes), fontsize=8)


def learning_curves(runs, labels, groups):
    """Loss and accuracy per epoch (training solid, validation dashed) and the
    generalization gap as `regaudit.answer.outcomes` defines it, a line per run."""
    history = runs.history
    if not len(history):
        return None
    history = _grouped(history, labels, groups)
    palette = _palette(groups)
    pairs = [p for p in (("loss", "val_loss"),) + outcomes.ACCURACY_PAIRS[:1]
             if p[0] in set(history.measure)]
    name, gaps = outcomes.gap_series(runs.history)
    figure, axes = _figure(len(pairs) + (name is not None), width=3.8, height=3.0, columns=3)
    for ax, (train, val) in zip(axes, pairs):
        part = history[history.measure.isin([train, val])].copy()
        part["split"] = np.where(part.measure == train, "train", "validation")
        group_lines(part, ax=ax, palette=palette, style="split",
                    bounds=(0.0, 1.0) if "acc" in train else (-np.inf, np.inf))
        ax.set_title(train)
        ax.set_ylabel(train)
    if name is not None:
        ax = axes[-1]
        group_lines(_grouped(gaps, labels, groups), ax=ax, palette=palette,
                    bounds=(-1.0, 1.0) if name == outcomes.GEN_GAP_ACC else (-np.inf, np.inf))
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_title(outcomes.GAP_WORDS[name].replace("generalization gap", "gap"))
        ax.set_ylabel(name)
    _title_notes(figure, [], [], [], history)
    _shared_legend(figure, axes)
    return figure


def _heatmap_rows(runs, acts, labels, groups):
    """[(panel title, its runs)]: with every group of 2 runs or more (a study's seeds), one
    row per group averaging its runs; else the first run of each group (each run when
    ungrouped); at most MAX_PANEL_RUNS rows."""
    present = [r for r in runs.run_ids if r in set(acts.run)]
    members = {}
    for run in present:
        members.setdefault(groups.get(run, run) if groups else run, []).append(run)
    if groups and seeded(_grouped(acts[["run"]].drop_duplicates(), labels, groups)):
        rows = [(f"{group} (mean of {len(ids)} runs)", ids) for group, ids in members.items()]
    else:
        rows = [(f"run {labels.get(ids[0], ids[0])}", ids[:1]) for ids in members.values()]
    return rows[:MAX_PANEL_RUNS]


def activation_heatmaps(runs, labels, groups, measures=(MEAN, STD, DEAD_FRAC)):
    """Layer x epoch heatmaps of activation statistics, one row per group of seeds (their
    mean) or per run (the first of each group), each listing its own layers only, one
    column per measure (`dead_frac` covers ReLU-family outputs only)."""
    acts = runs.activations
    acts = acts[(acts.layer != MODEL) & acts.measure.isin(measures)]
    if not len(acts):
        return None
    rows = _heatmap_rows(runs, acts, labels, groups)
    measures = [m for m in measures if m in set(acts.measure)]
    identity = _identity_layers(runs, acts)
    order = [l for l in _layer_order(runs, acts) if l not in identity]
    # each row's own layers only (a study's variants differ in their layers)
    own = [evenly_spaced([l for l in order if l in set(acts.layer[acts.run.isin(ids)])],
                         MAX_HEATMAP_LAYERS) for _, ids in rows]
    heights = [0.2 * len(layers) + 1.0 for layers in own]
    figure = Figure(figsize=(4.2 * len(measures), sum(heights) + 0.3 * len(rows)),
                    layout="constrained")
    figure.get_layout_engine().set(h_pad=0.12, hspace=0.04)  # a title clear of the ticks above
    axes = figure.subplots(len(rows), len(measures), squeeze=False,
                           gridspec_kw={"height_ratios": heights})
    for row, ((title, ids), layers) in enumerate(zip(rows, own)):
        for col, measure in enumerate(measures):
            ax = axes[row, col]
            part = acts[acts.run.isin(ids) & (acts.measure == measure)]
            if not len(part):
                ax.set_visible(False)
                continue
            layer_heatmap(part, ax=ax, order=layers)  # the mean over the row's runs
            ax.grid(False)
            ax.set_title(f"{title}: {measure}", fontsize=8)
            ax.set_xlabel("epoch" if row == len(rows) - 1 else "")
            if col:
                ax.set_yticklabels([])
    return figure


def percentile_bands(runs, labels, groups):
    """p15 / p50 / p85 of each layer's activations over training, as in Ioffe &
    Szegedy's Figure 1: the median as a line, the 15-85 band shaded, one panel per
    layer, a colour per group, a line per run."""
    acts = runs.activations
    acts = acts[(acts.layer != MODEL) & acts.measure.isin([P15, P50, P85])]
    if not len(acts):
        return None
    wide = acts.pivot_table(index=["run", "layer", "layer_class", "epoch"], columns="measure",
                            values="value").reset_index()
    wide = _grouped(wide, labels, groups)
    shown, order, identity = _panel_layers(runs, wide)
    palette = _palette(groups)
    figure, axes = _figure(len(shown))
    _title_notes(figure, shown, order, identity, wide,
                 "a group of several runs drawn as the median over its runs of p15, p50 and p85",
                 "a group of several runs drawn as the median over its runs of p15, p50 and p85")
    for ax, layer in zip(axes, shown):
        percentile_band(wide[wide.layer == layer], ax=ax, palette=palette)
        ax.set_title(f"layer {layer}", fontsize=8)
    _shared_legend(figure, axes)
    return figure


def dead_and_saturated(runs, labels, groups):
    """Per layer at the last audit: the fraction of dead ReLU units and of saturated
    sigmoid/tanh values, the mean over each group's runs with the spread of its runs."""
    acts = runs.activations
    acts = acts[(acts.layer != MODEL) & acts.measure.isin([DEAD_FRAC, SAT_FRAC])]
    if not len(acts):
        return None
    final = _grouped(outcomes.at_last_epoch(acts), labels, groups)
    final = final[~final.layer.isin(_identity_layers(runs, final))]
    worst = final.groupby("layer")["value"].max().nlargest(MAX_LAYER_PANELS)
    capped = final.layer.nunique() > MAX_LAYER_PANELS
    final = final[final.layer.isin(worst.index)]
    measures = [m for m in (DEAD_FRAC, SAT_FRAC) if m in set(final.measure)]
    figure, axes = _figure(len(measures), width=5.0, height=0.25 * len(set(final.layer)) + 1.6,
                           columns=2)
    for ax, measure in zip(axes, measures):
        part = final[final.measure == measure]
        final_bars(part, ax=ax, palette=_palette(groups), order=_layer_order(runs, part))
        ax.set_xlim(0, max(0.05, float(part.value.max()) * 1.15))
        ax.set_title(f"{measure} at the last audit"
                     + (f" ({MAX_LAYER_PANELS} layers with the largest values)" if capped else ""))
    _shared_legend(figure, axes)
    return figure


def drift_per_layer(runs, labels, groups):
    """drift_w1 (W1 between consecutive audits over the earlier std) per layer over
    training, one panel per layer, a line per run."""
    shift = runs.shift
    part = shift[(shift.measure == DRIFT_W1) & (shift.layer != MODEL)]
    if not len(part):
        return None
    part = _grouped(part, labels, groups)
    palette = _palette(groups)
    shown, order, identity = _panel_layers(runs, part)
    figure, axes = _figure(len(shown))
    _title_notes(figure, shown, order, identity, part)
    for ax, layer in zip(axes, shown):
        group_lines(part[part.layer == layer], ax=ax, palette=palette, bounds=(0.0, np.inf))
        ax.set_title(f"layer {layer}", fontsize=8)
        ax.set_ylabel(DRIFT_W1)
    _shared_legend(figure, axes)
    return figure


def batchnorm_shift(runs, labels, groups):
    """bn_var_ratio (observed input variance / moving variance) and
    bn_dropout_var_ratio (variance with upstream noise on / without, pooled over
    channels) over training, on a log scale: a panel per BN layer and measure."""
    shift = runs.shift
    part = shift[shift.measure.isin([BN_VAR_RATIO, BN_DROPOUT_VAR_RATIO])]
    if not len(part):
        return None
    part = _grouped(part, labels, groups)
    palette = _palette(groups)
    order = _layer_order(runs, part)
    shown = evenly_spaced(order, MAX_LAYER_PANELS // 2)
    panels = [(layer, measure) for measure in (BN_VAR_RATIO, BN_DROPOUT_VAR_RATIO)
              for layer in shown
              if len(part[(part.layer == layer) & (part.measure == measure)])]
    figure, axes = _figure(len(panels))
    _title_notes(figure, shown, order, [], part)
    for ax, (layer, measure) in zip(axes, panels):
        ratio_lines(part[(part.layer == layer) & (part.measure == measure)], ax=ax, palette=palette)
        ax.set_title(f"layer {layer}", fontsize=8)
        ax.set_ylabel(f"{measure} (log)")
    _shared_legend(figure, axes)
    return figure


def acc_at_k(runs, labels, groups):
    """Accuracy of the mean of k Monte-Carlo dropout samples against k at each run's last
    audit (Srivastava et al. 2014, Fig. 11); dashed, the weight-scaled network of that
    run; a colour per group."""
    ens = runs.ensemble
    part = ens[(ens.layer == MODEL) & ens.measure.str.startswith(prefix(ACC_AT_K))]
    if not len(part):
        return None
    part = _grouped(outcomes.at_last_epoch(part), labels, groups)
    part["k"] = part.measure.str.split(":").str[1].astype(int)
    det = ens[(ens.layer == MODEL) & (ens.measure == DET_ACC)].sort_values("epoch")
    figure = Figure(figsize=(6.4, 3.8), layout="constrained")
    ax = ensemble_curve(part, _grouped(det, labels, groups), ax=figure.subplots(),
                        palette=_palette(groups))
    ax.set_title("Dropout ensemble against the weight-scaled network")
    figure.legend(loc="outside right upper", frameon=False)
    return figure
