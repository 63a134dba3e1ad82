"""The report as Markdown with a folder of PNGs; every run-derived string escaped."""

import html
import os
import re

from regaudit import __version__

from regaudit.reports.cells import format_cell as _format

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


def render_markdown(context, output):
    """(Markdown text, [PNG paths written]) of the report; PNGs in `<stem>_files/`."""
    stem = os.path.splitext(os.path.basename(output))[0]
    folder_name = stem + "_files"
    folder = os.path.join(os.path.dirname(os.path.abspath(output)), folder_name)
    os.makedirs(folder, exist_ok=True)
    runs = context["runs"]
    lines = [f"# {md_escape(context['title'])}", "",
             f"regaudit {__version__}, {len(runs.runs)} run(s), grouped by "
             f"`{context['group_by'].replace('`', '')}`", ""]
    answer = context["answer"]
    if answer is not None:
        lines += ["## The answer", "", f"**{md_escape(answer.numbers.get('action') or answer.text)}**", "",
                  f"`{answer.id}` {md_escape(answer.text)}", ""]
    if context["claims"]:
        lines += ["## The article's claims, on these runs", "",
                  f"The article regaudit grew from, {md_escape(context['article'])}: each claim's "
                  "verdict on these runs.", ""]
        lines += [f"- `{c.id}` {md_escape(c.text)}" for c in context["claims"]]
        lines += [""]
    lines += ["## Findings", ""]
    for group in context["groups"]:
        lines += [f"- {'**notice** ' if group.level == 'notice' else ''}`{group.id}` "
                  f"**{md_escape(group.title)}**"]
        lines += [f"  - {md_escape(f.about) + ': ' if f.about else ''}{md_escape(f.text)}"
                  for f in group.findings]
    if not context["groups"]:
        lines += ["No finding: the runs hold too little data for any rule."]
    if len(context["comparisons"]):
        lines += ["", "### Differences between groups", "", _md_table(context["comparisons"])]
    if len(context["lint"]):
        lines += ["", "## Architecture lint, and what was measured there", "",
                  _md_table(context["lint"])]
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
