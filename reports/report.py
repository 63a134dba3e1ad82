"""The comparative report: findings first, an overview table, one section per measure
family (figures), a layer table per model. One self-contained HTML file (images inlined
as data URIs, CSS inline, no scripts, no external requests) or Markdown with a folder of
PNGs. Every string that comes from a run is escaped.

A family's section is one `Section` entry in SECTIONS: its title, the `RunSet` table it
reads (the section is left out when that table is empty), and its figures.
"""

import io
import os
import shutil
import time
from dataclasses import dataclass, field

import pandas as pd

from regaudit.measures.ensemble import DET_ACC, MC_ACC
from regaudit.measures.timing import AUDIT_SECONDS, EPOCH_SECONDS
from regaudit.answer import outcomes
from regaudit.answer.claims import ARTICLE
from regaudit.errors import RegauditError
from regaudit.answer.run_findings import findings as find
from regaudit.answer.grouped import answer_of, claims_of, grouped
from regaudit.read import DEFAULT_GROUP
from regaudit.schema import MODEL, TAG_PREFIX

from regaudit.reports import plots, study_plots
from regaudit.reports.comparisons import comparison_table, is_comparison
from regaudit.reports.lint_section import lint_table
from regaudit.reports.html import render_html as _html
from regaudit.reports.markdown import render_markdown as _markdown


@dataclass(frozen=True)
class Section:
    title: str
    table: str
    intro: str
    #: (file stem, figure function(runs, labels, groups), caption)
    figures: tuple


SECTIONS = (
    Section("Study", "history",
            "Each variant's mean over its seeds, with its 95% t-interval.",
            (("dose_response", study_plots.dose_response,
              "Validation outcome and generalization gap against the dropout rate, a line per "
              "BatchNormalization setting (variants at the model's learning rate)."),
             ("batchnorm_grid", study_plots.batchnorm_grid,
              "The outcome with BatchNormalization removed, after or before the activation, a "
              "line per dropout rate."),
             ("learning_rate_tolerance", study_plots.learning_rate_tolerance,
              "The outcome against the learning-rate factor, with and without "
              "BatchNormalization (the same dropout)."))),
    Section("Training", "history",
            "Keras' epoch logs as the audit recorded them.",
            (("learning_curves", plots.learning_curves,
              "Loss and accuracy per epoch, training solid and validation dashed; the "
              "generalization gap is accuracy - val_accuracy (val_loss - loss when no "
              "accuracy is logged), as in the findings."),)),
    Section("Activation statistics", "activations",
            "Every tapped layer's output on the fixed probe, in inference mode.",
            (("activation_heatmaps", plots.activation_heatmaps,
              "Layer x epoch: mean, standard deviation and fraction of dead ReLU units, each "
              "row with its own layers: a group's mean over its runs when every group has "
              "several (a study's seeds), else the first run of each group."),
             ("percentile_bands", plots.percentile_bands,
              "Median (line) and 15th-85th percentile band of each layer's values over "
              "training, as in Ioffe & Szegedy (2015), Figure 1."),
             ("dead_and_saturated", plots.dead_and_saturated,
              "Dead units (exactly zero on every probe sample) and saturated sigmoid/tanh "
              "values at the last audit."))),
    Section("Covariate shift", "shift",
            "How each layer's distribution moves while training, and the variance shift "
            "BatchNormalization meets at inference (Li et al. 2019).",
            (("drift_per_layer", plots.drift_per_layer,
              "drift_w1: Wasserstein-1 distance between consecutive audits, over the earlier "
              "standard deviation."),
             ("batchnorm_shift", plots.batchnorm_shift,
              "Log scale. bn_var_ratio: observed input variance over the moving variance (1 = "
              "BN's inference statistics fit); bn_dropout_var_ratio: input variance with "
              "upstream Dropout on over the inference variance, pooled over channels."))),
    Section("Dropout ensembles", "ensemble",
            "Monte-Carlo dropout against the single weight-scaled network Keras uses at "
            "inference (Srivastava et al. 2014).",
            (("acc_at_k", plots.acc_at_k,
              "Accuracy of the average of k dropout samples against k; dashed: the "
              "weight-scaled network."),)),
)

OVERVIEW_METRICS = ("loss", "val_loss", "accuracy", "val_accuracy")
#: a notice block's rows shown before its fold (an info block's: 1; the rest, and every
#: full text, folded)
SHOWN_ROWS = 2
ENSEMBLE_METRICS = (DET_ACC, MC_ACC)


@dataclass
class Report:
    path: str
    findings: list
    figures: list = field(default_factory=list)  # PNG paths (Markdown) or names (HTML)
    seconds: float = 0.0
    images: list = field(default_factory=list)  # (stem, PNG bytes) of every figure


def run_labels(runs):
    """{run id: a short label}: the run name; a name already taken gets the start of
    the run id."""
    names = dict(zip(runs.runs["run"], runs.runs["name"]))
    labels = {}
    for run in runs.run_ids:
        label = str(names.get(run) or run[:8])
        if label in labels.values():
            label = f"{label} ({run[:6]})"
        labels[run] = label
    return labels


def overview(runs, groups):
    """One row per run, narrow enough for the page: name, group, final Keras metrics, the
    generalization gap (`regaudit.answer.outcomes`), the dropout ensemble's accuracies, epochs
    and times. The model and its parameters are in the layer section."""
    rows = []
    acts = runs.activations
    gap_name, gaps = outcomes.final_gap(runs)
    # each table filtered once, then split by run (not filtered again for every run)
    ens = runs.ensemble[runs.ensemble.layer == MODEL].sort_values("epoch")
    ens = dict(tuple(ens.groupby("run", sort=False)))
    history = runs.history
    epochs_of = dict(tuple(history[history.measure == EPOCH_SECONDS].groupby("run", sort=False)))
    audits = acts[(acts.layer == MODEL) & (acts.measure == AUDIT_SECONDS)]
    audits = audits.groupby("run")["value"].sum()
    for _, info in runs.runs.iterrows():
        run = info["run"]
        row = {"run": info["name"], "group": groups.get(run, "")}
        final = info["final"] or {}
        for metric in OVERVIEW_METRICS:
            if metric in final:
                row[metric] = final[metric]
        if gap_name:
            row[gap_name] = gaps.get(run)
        own = ens.get(run)
        for metric in ENSEMBLE_METRICS:
            part = own[own.measure == metric] if own is not None else ()
            if len(part):
                row[metric] = float(part.value.iloc[-1])
        epochs = epochs_of.get(run, ())
        row["epochs"] = int(epochs.epoch.max()) if len(epochs) else None
        row["train s"] = float(epochs.value.sum()) if len(epochs) else None
        row["audit s"] = float(audits[run]) if run in audits.index else None
        rows.append(row)
    return pd.DataFrame(rows)


def output_heads(runs):
    """{model name: the heads the dropout ensemble assumed (tag regaudit.heads)}."""
    tags = runs.tags[runs.tags.key == TAG_PREFIX + "heads"]
    models = dict(zip(runs.runs["run"], runs.runs["model"]))
    return {models.get(run) or "model": value for run, value in zip(tags.run, tags.value)}


def _measured(row):
    """A layer row's "measured" cell: yes, or why not (model.json's `reason`), and
    whether the layer is random in inference (model.json's `stochastic`)."""
    if row.audited is True or row.audited == 1:
        measured = "yes"
    elif isinstance(row.reason, str):
        measured = f"no: {row.reason}"
    else:
        measured = "" if pd.isna(row.audited) else "no"  # a run older than the reasons
    if row.stochastic is True or row.stochastic == 1:
        measured += " (random in inference: every prediction differs)"
    return measured


def layer_tables(runs):
    """[(model name, runs using it, layer DataFrame)] per distinct model architecture; the
    `regularizer` column says which layers regaudit treats as noise sources or
    BatchNormalization (`regaudit.model.regularizers`)."""
    layers = runs.layers
    if not len(layers):
        return []
    names = dict(zip(runs.runs["run"], runs.runs["name"]))
    models = dict(zip(runs.runs["run"], runs.runs["model"]))
    out, seen = [], {}
    by_run = dict(tuple(layers.groupby("run", sort=False)))
    for run in runs.run_ids:
        own = by_run.get(run, layers.iloc[:0])
        table = own[["name", "layer_class", "shape", "activation", "rate",
                     "momentum", "regularizer", "params"]].copy()
        table["measured"] = [_measured(row) for row in own.itertuples()]
        key = (models.get(run), tuple(map(str, table.itertuples(index=False))))
        if key in seen:
            out[seen[key]][1].append(names.get(run, run))
            continue
        seen[key] = len(out)
        out.append((models.get(run) or "model", [names.get(run, run)], table.reset_index(drop=True)))
    return out


#: the figures' resolution, and the colours of their PNGs: 64 colours keep a figure's
#: lines, bands and viridis heatmaps apart (looked at in Chromium), and the PNG is about a
#: quarter of a true-colour one (the default demo study's report: 1.5 MB to 474 KB; 256
#: colours: 528 KB; `benchmarks/report_reading.py`)
DPI = 96
COLOURS = 64


def _png(figure):
    """The figure as a COLOURS-colour PNG, drawn once by Agg (no true-colour PNG encoded first)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from PIL import Image

    canvas = FigureCanvasAgg(figure)
    figure.set_dpi(DPI)
    canvas.draw()
    width, height = canvas.get_width_height()
    image = Image.frombuffer("RGBA", (width, height), canvas.buffer_rgba(), "raw", "RGBA", 0, 1)
    small = image.convert("RGB").quantize(COLOURS, method=Image.Quantize.FASTOCTREE,
                                          dither=Image.Dither.NONE)
    buffer = io.BytesIO()
    small.save(buffer, format="PNG")
    return buffer.getvalue()





def render_figures(runs, labels, groups, progress=None):
    """[(section, [(stem, caption, png bytes)])] for the sections with a figure."""
    import matplotlib

    out = []
    for section in SECTIONS:
        if not len(runs.table(section.table)):
            continue
        figures = []
        for stem, function, caption in section.figures:
            with matplotlib.rc_context(plots.RC):
                figure = function(runs, labels, groups)
                png = None if figure is None else _png(figure)
            if progress is not None:
                progress(stem)
            if png is not None:
                figures.append((stem, caption, png))
        if figures:  # a section none of whose figures has data is left out (a study's, elsewhere)
            out.append((section, figures))
    return out


def figure_count():
    return sum(len(section.figures) for section in SECTIONS)


def build_report(runs, output, fmt="html", group_by=None, progress=None):
    """Write the report of `runs` (a RunSet) to `output` (.html, or .md with a
    `<stem>_files/` folder of PNGs); return a `Report`."""
    started = time.perf_counter()
    groups = runs.group(group_by or DEFAULT_GROUP)
    labels = run_labels(runs)
    found = find(runs, groups)
    rendered = render_figures(runs, labels, groups, progress)
    context = {
        "title": _title(runs),
        "runs": runs,
        "group_by": group_by or DEFAULT_GROUP,
        "answer": answer_of(found),
        "groups": grouped(found),
        "shown_rows": SHOWN_ROWS,
        "comparisons": comparison_table([f for f in found if is_comparison(f)]),
        "claims": claims_of(found),
        "article": ARTICLE,
        "lint": lint_table(runs),
        "overview": overview(runs, groups),
        "layers": layer_tables(runs),
        "heads": output_heads(runs),
        "sections": rendered,
    }
    folder = os.path.dirname(os.path.abspath(output))
    try:
        os.makedirs(folder, exist_ok=True)
        if fmt == "html":
            text = _html(context)
            figures = [stem for _, figs in rendered for stem, _, _ in figs]
        else:
            text, figures = _markdown(context, output)
        # written whole or not at all: a temporary file in the same folder, then renamed
        temporary = f"{output}.{os.getpid()}.tmp"
        try:
            with open(temporary, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.replace(temporary, output)
        finally:
            if os.path.exists(temporary):
                os.remove(temporary)
    except OSError as error:
        if fmt != "html":  # no half-written folder of figures either
            stem = os.path.splitext(os.path.basename(output))[0]
            shutil.rmtree(os.path.join(folder, stem + "_files"), ignore_errors=True)
        raise RegauditError(
            f"regaudit: cannot write the report to {output} ({error.strerror or error}); "
            "pass -o with a path in a folder you can write to.") from None
    images = [(stem, png) for _, figs in rendered for stem, _, png in figs]
    return Report(os.path.abspath(output), found, figures, time.perf_counter() - started, images)


def _title(runs):
    names = list(runs.runs["name"])
    if len(names) == 1:
        return f"regaudit report: {names[0]}"
    return f"regaudit report: {len(names)} runs"
