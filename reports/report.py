"""The comparative report: findings first, an overview table, one section per measure
family (figures), a layer table per model. One self-contained HTML file (images inlined
as data URIs, CSS inline, no scripts, no external requests) or Markdown with a folder of
PNGs. Every string that comes from a run is escaped.

A family's section is one `Section` entry in SECTIONS: its title, the `RunSet` table it
reads (the section is left out when that table is empty), and its figures.
"""

import base64
import html
import io
import os
import re
import shutil
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from regaudit import __version__
from regaudit.errors import RegauditError
from regaudit.findings import findings as find
from regaudit.read import DEFAULT_GROUP, REPORT_TAG
from regaudit.schema import MODEL, TAG_PREFIX

from regaudit.reports import plots


@dataclass(frozen=True)
class Section:
    title: str
    table: str
    intro: str
    #: (file stem, figure function(runs, labels, groups), caption)
    figures: tuple


SECTIONS = (
    Section("Training", "history",
            "Keras' epoch logs as the audit recorded them.",
            (("learning_curves", plots.learning_curves,
              "Loss and accuracy per epoch, training solid and validation dashed; the "
              "generalization gap is validation loss minus training loss."),)),
    Section("Activation statistics", "activations",
            "Every tapped layer's output on the fixed probe, in inference mode.",
            (("activation_heatmaps", plots.activation_heatmaps,
              "Layer x epoch: mean, standard deviation and fraction of dead units (the "
              "first run of each group)."),
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
              "bn_var_ratio: observed input variance over the moving variance (1 = BN's "
              "inference statistics fit); bn_dropout_var_ratio: input variance with upstream "
              "Dropout on over the inference variance."))),
    Section("Dropout ensembles", "ensemble",
            "Monte-Carlo dropout against the single weight-scaled network Keras uses at "
            "inference (Srivastava et al. 2014).",
            (("acc_at_k", plots.acc_at_k,
              "Accuracy of the average of k dropout samples against k; dashed: the "
              "weight-scaled network."),)),
)

OVERVIEW_METRICS = ("loss", "val_loss", "accuracy", "val_accuracy")
ENSEMBLE_METRICS = ("det_acc", "mc_acc")


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
    """One row per run: name, group, setup, model, parameters, final metrics, times."""
    tags = runs.tags
    rows = []
    acts = runs.activations
    for _, info in runs.runs.iterrows():
        run = info["run"]
        own = dict(zip(tags[tags.run == run].key, tags[tags.run == run].value))
        row = {"run": info["name"], "group": groups.get(run, ""),
               "setup": own.get(TAG_PREFIX + "setup", ""), "model": info.get("model") or "",
               "parameters": info.get("params_count", 0)}
        final = info["final"] or {}
        for metric in OVERVIEW_METRICS:
            if metric in final:
                row[metric] = final[metric]
        ens = runs.ensemble[(runs.ensemble.run == run) & (runs.ensemble.layer == MODEL)]
        for metric in ENSEMBLE_METRICS:
            part = ens[ens.measure == metric].sort_values("epoch")
            if len(part):
                row[metric] = float(part.value.iloc[-1])
        history = runs.history
        epochs = history[(history.run == run) & (history.measure == "epoch_seconds")]
        row["epochs"] = int(epochs.epoch.max()) if len(epochs) else None
        row["train s"] = float(epochs.value.sum()) if len(epochs) else None
        audit = acts[(acts.run == run) & (acts.layer == MODEL) & (acts.measure == "audit_seconds")]
        row["audit s"] = float(audit.value.sum()) if len(audit) else None
        rows.append(row)
    return pd.DataFrame(rows)


def output_heads(runs):
    """{model name: the heads the dropout ensemble assumed (tag regaudit.heads)}."""
    tags = runs.tags[runs.tags.key == TAG_PREFIX + "heads"]
    models = dict(zip(runs.runs["run"], runs.runs["model"]))
    return {models.get(run) or "model": value for run, value in zip(tags.run, tags.value)}


def layer_tables(runs):
    """[(model name, runs using it, layer DataFrame)] per distinct model architecture; the
    `regularizer` column says which layers regaudit treats as noise sources or
    BatchNormalization (`regaudit.regularizers`)."""
    layers = runs.layers
    if not len(layers):
        return []
    names = dict(zip(runs.runs["run"], runs.runs["name"]))
    models = dict(zip(runs.runs["run"], runs.runs["model"]))
    out, seen = [], {}
    for run in runs.run_ids:
        table = layers[layers.run == run][["name", "layer_class", "shape", "activation", "rate",
                                           "regularizer", "params"]]
        key = (models.get(run), tuple(map(str, table.itertuples(index=False))))
        if key in seen:
            out[seen[key]][1].append(names.get(run, run))
            continue
        seen[key] = len(out)
        out.append((models.get(run) or "model", [names.get(run, run)], table.reset_index(drop=True)))
    return out


def _png(figure):
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=96)
    return buffer.getvalue()


def _format(value):
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return "x".join(str(v) for v in value)
    return str(value)


def render_figures(runs, labels, groups, progress=None):
    """[(section, [(stem, caption, png bytes)])] for the sections with data."""
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
        "groups": groups,
        "group_by": group_by or DEFAULT_GROUP,
        "findings": found,
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


TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="regaudit {{ version }}">
<title>{{ title }}</title>
<style>
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1200px; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; font-size: .85em; margin: .5em 0 1em; }
th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: left; }
th { background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.notice { border-left: 4px solid #d9822b; background: #fff7ee; }
.info { border-left: 4px solid #9aa5b1; background: #f7f8fa; }
.finding { padding: .4em .8em; margin: .4em 0; }
figure { margin: 1em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: .85em; color: #555; } .meta { color: #666; font-size: .85em; }
code { background: #f4f4f4; padding: 0 .2em; } .wide { overflow-x: auto; }
</style>
</head>
<body>
<h1>{{ title }}</h1>
<p class="meta">regaudit {{ version }} &middot; {{ runs.runs|length }} run(s) &middot; grouped by
<code>{{ group_by }}</code> &middot; created {{ created }}</p>

<h2 id="findings">Findings</h2>
{% for f in findings %}<div class="finding {{ f.level }}">{{ f.text }}</div>
{% else %}<p>No finding: the runs hold too little data for any rule.</p>{% endfor %}

<h2 id="overview">Overview</h2>
<div class="wide"><table>
<tr>{% for c in overview.columns %}<th>{{ c }}</th>{% endfor %}</tr>
{% for row in overview.itertuples(index=False) %}<tr>{% for v in row %}<td{% if v is number %} class="num"{% endif %}>{{ fmt(v) }}</td>{% endfor %}</tr>
{% endfor %}</table></div>

{% for section, figures in sections %}
<h2>{{ section.title }}</h2>
<p>{{ section.intro }}</p>
{% for stem, caption, png in figures %}<figure id="{{ stem }}">
<img src="data:image/png;base64,{{ b64(png) }}" alt="{{ stem }}">
<figcaption>{{ caption }}</figcaption>
</figure>
{% endfor %}{% endfor %}

<h2 id="layers">Layers</h2>
{% for model, used_by, table in layers %}<h3>{{ model }}</h3>
<p class="meta">runs: {{ used_by|join(", ") }}{% if heads.get(model) %}; outputs read as: {{ heads[model] }} (from the compiled loss and the output activation){% endif %}</p>
<table>
<tr>{% for c in table.columns %}<th>{{ c }}</th>{% endfor %}</tr>
{% for row in table.itertuples(index=False) %}<tr>{% for v in row %}<td>{{ fmt(v) }}</td>{% endfor %}</tr>
{% endfor %}</table>
{% endfor %}
<p class="meta">Run ids: {% for run in runs.run_ids %}<code>{{ run }}</code> {% endfor %}</p>
</body>
</html>
"""


def _html(context):
    import jinja2

    environment = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    template = environment.from_string(TEMPLATE)
    return template.render(
        version=__version__, created=time.strftime("%Y-%m-%d %H:%M"),
        fmt=_format, b64=lambda data: base64.b64encode(data).decode("ascii"), **context,
    )


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]|~])")


def md_escape(value):
    """A run-derived string safe in Markdown text and table cells: HTML escaped (so a
    renderer that allows inline HTML shows it as text) and Markdown punctuation
    backslash-escaped, newlines flattened."""
    text = html.escape(_format(value), quote=False).replace("\n", " ").replace("\r", " ")
    return _MD_SPECIAL.sub(r"\\\1", text)


def _md_table(frame):
    lines = ["| " + " | ".join(md_escape(c) for c in frame.columns) + " |",
             "|" + "---|" * len(frame.columns)]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(md_escape(v) for v in row) + " |")
    return "\n".join(lines)


def _markdown(context, output):
    stem = os.path.splitext(os.path.basename(output))[0]
    folder_name = stem + "_files"
    folder = os.path.join(os.path.dirname(os.path.abspath(output)), folder_name)
    os.makedirs(folder, exist_ok=True)
    runs = context["runs"]
    lines = [f"# {md_escape(context['title'])}", "",
             f"regaudit {__version__}, {len(runs.runs)} run(s), grouped by "
             f"`{context['group_by'].replace('`', '')}`", "", "## Findings", ""]
    lines += [f"- {'**notice**: ' if f.level == 'notice' else ''}{md_escape(f.text)}"
              for f in context["findings"]] or ["No finding: the runs hold too little data for any rule."]
    lines += ["", "## Overview", "", _md_table(context["overview"]), ""]
    written = []
    for section, figures in context["sections"]:
        lines += [f"## {section.title}", "", section.intro, ""]
        for figure_stem, caption, png in figures:
            path = os.path.join(folder, figure_stem + ".png")
            with open(path, "wb") as handle:
                handle.write(png)
            written.append(path)
            lines += [f"![{figure_stem}]({folder_name}/{figure_stem}.png)", "", f"*{caption}*", ""]
    lines += ["## Layers", ""]
    for model, used_by, table in context["layers"]:
        heads = context["heads"].get(model)
        lines += [f"### {md_escape(model)}", "", "runs: " + ", ".join(md_escape(u) for u in used_by)
                  + (f"; outputs read as: {md_escape(heads)}" if heads else ""), "", _md_table(table), ""]
    lines += ["Run ids: " + " ".join(f"`{r}`" for r in runs.run_ids), ""]
    return "\n".join(lines), written


def log_report(report, runs, fmt="html", client=None):
    """Log the report to MLflow: into the run itself for one run, else into a new run in
    the first run's experiment tagged with the compared run ids. Returns the run id."""
    from mlflow.tracking import MlflowClient

    client = client or MlflowClient()
    ids = runs.run_ids
    if len(ids) == 1:
        target = ids[0]
    else:
        experiment = runs.runs["experiment_id"].iloc[0]
        created = client.create_run(
            experiment, run_name=f"regaudit-report-{len(ids)}-runs",
            tags={REPORT_TAG: ",".join(ids), TAG_PREFIX + "version": __version__,
                  "mlflow.note.content": f"regaudit comparison of {len(ids)} runs: "
                                          + ", ".join(ids)})
        target = created.info.run_id
    folder = "regaudit/report"
    client.log_artifact(target, report.path, artifact_path=folder)
    if fmt == "md":
        for path in report.figures:
            client.log_artifact(target, path, artifact_path=f"{folder}/{os.path.basename(os.path.dirname(path))}")
    if len(ids) > 1:
        client.set_terminated(target)
    return target
