"""MkDocs hook: `::: regaudit.<module>.<name>` lines of a page become that object's
signature and docstring; `::: measures` becomes the table of every measure declared in
`regaudit.measures.registry`, `::: lint-rules` the table of every lint rule declared with
`regaudit.model.lint_rules.lint_rule`, `::: finding-rules` the table of every finding rule
declared with `regaudit.answer.finding.finding_rule`. The objects are imported (the
source tree resolves `regaudit.callbacks` and `regaudit.reports` as the installed package
does), not read by a static parser such as mkdocstrings'. Every page's lists get the blank
line Python-Markdown needs before them (`open_lists`)."""

import importlib
import inspect
import re

DIRECTIVE = re.compile(r"^::: (regaudit(?:\.\w+)+)\s*$", re.M)


SECTION = re.compile(r"^(Args|Arguments|Returns|Raises|Attributes|Yields):\s*$")
ENTRY = re.compile(r"^(\s+)([\w*]+(?: \([^)]*\))?): (.*)$")


def sections_as_lists(doc):
    """Google-style sections (`Args:` and indented `name: text` entries, continued on
    deeper-indented lines) as a bold heading and a Markdown list."""
    out, entry_indent = [], None
    for line in doc.splitlines():
        heading = SECTION.match(line)
        if heading:
            out += ["", f"**{heading.group(1)}**", ""]
            entry_indent = 0
            continue
        if entry_indent is not None:
            entry = ENTRY.match(line)
            indent = len(line) - len(line.lstrip())
            if entry and (not entry_indent or len(entry.group(1)) == entry_indent):
                entry_indent = len(entry.group(1))
                out.append(f"- `{entry.group(2)}`: {entry.group(3)}")
                continue
            if line.strip() and entry_indent and indent > entry_indent:
                out[-1] += " " + line.strip()
                continue
            if line.strip() and indent == 0:
                entry_indent = None
            elif not line.strip():
                continue
        out.append(line)
    return "\n".join(out)


def render(path):
    module_name, _, name = path.rpartition(".")
    target = getattr(importlib.import_module(module_name), name)
    try:
        signature = f"{name}{inspect.signature(target)}"
    except (TypeError, ValueError):
        signature = name
    kind = "class" if inspect.isclass(target) else "function"
    doc = inspect.getdoc(target)
    if not doc:
        raise ValueError(f"{path} has no docstring; every public name documents itself")
    doc = sections_as_lists(doc)
    return (f"### `{name}`\n\n*{kind}* `{path}`\n\n```python\n{signature}\n```\n\n{doc}\n")


def _cell(text):
    return str(text).replace("|", "\\|").replace("\n", " ")


def measures_table():
    """Every declared measure: name, table, scope, unit, metric or not, where it is
    computed, and its definition (the first paragraph of its docstring)."""
    from regaudit.measures.registry import measures

    rows = ["| measure | table | one value per | unit | MLflow metric | declared in | definition |",
            "|---|---|---|---|---|---|---|"]
    tables = ("activations", "shift", "ensemble", "history")
    ordered = sorted(measures().values(),
                     key=lambda m: tables.index(m.table) if m.table in tables else len(tables))
    for m in ordered:
        rows.append(f"| `{_cell(m.name)}` | {m.table} | {m.scope} | {m.unit} | "
                    f"{'yes' if m.headline else 'no'} | `{m.module}` | {_cell(m.summary)} |")
    return "\n".join(rows) + "\n"


def _first_sentence(text):
    text = " ".join(text.split("\n\n")[0].split())
    return re.split(r"(?<=[a-z0-9)`])\. (?=[A-Z])", text)[0].rstrip(".") + "."


def lint_rules_table():
    """Every declared lint rule: id, severity, what it checks (its docstring's first
    sentence), its source, the measures that speak to it once the model trained."""
    from regaudit.model.lint_rules import RULES

    rows = ["| id | severity | what it checks | source | measured by |",
            "|---|---|---|---|---|"]
    for rule in RULES:
        doc = re.sub(r"^RA1\d\d \([^)]*\): ", "", _first_sentence(inspect.getdoc(rule)))
        measured = ", ".join(f"`{m}`" for m in rule.evidence) or _cell(rule.elsewhere)
        rows.append(f"| {rule.id} | {rule.severity} | `{rule.__name__}`: {_cell(doc)} | "
                    f"{_cell(rule.source)} | {measured} |")
    return "\n".join(rows) + "\n"


def _ids_text(ids):
    """RA251-RA257 for a run of consecutive ids, else the ids listed."""
    numbers = [int(i[2:]) for i in ids]
    if len(ids) > 2 and numbers == list(range(numbers[0], numbers[0] + len(ids))):
        return f"{ids[0]}-{ids[-1]}"
    return ", ".join(ids)


def finding_rules_table():
    """Every declared finding rule: its ids, what it finds, the measures it reads."""
    from regaudit.answer.finding import finding_rules

    rows = ["| id | finding | rule | reads |", "|---|---|---|---|"]
    for rule in finding_rules():
        reads = ", ".join(f"`{m}`" for m in rule.evidence)
        rows.append(f"| {_ids_text(rule.ids)} | {_cell(rule.summary)} | `{rule.__name__}` | {reads} |")
    return "\n".join(rows) + "\n"


TABLES = {"measures": measures_table, "lint-rules": lint_rules_table,
          "finding-rules": finding_rules_table}
TABLE_DIRECTIVE = re.compile(r"^::: (measures|lint-rules|finding-rules)\s*$", re.M)


LIST_ITEM = re.compile(r"^(?:[-*+]|\d+\.)\s")


def open_lists(markdown):
    """A blank line before every list that follows a paragraph line directly, as
    docstrings write them ("Over units:" then "- `dead_frac`: ..."): Python-Markdown,
    unlike GitHub, otherwise renders the list as run-on text of the paragraph."""
    out, fenced = [], False
    for line in markdown.split("\n"):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        previous = out[-1] if out else ""
        if (not fenced and LIST_ITEM.match(line) and previous.strip() and not previous[0].isspace()
                and not LIST_ITEM.match(previous) and not previous.startswith(("|", "#", ">"))):
            out.append("")
        out.append(line)
    return "\n".join(out)


def on_page_markdown(markdown, **kwargs):
    markdown = TABLE_DIRECTIVE.sub(lambda match: TABLES[match.group(1)](), markdown)
    return open_lists(DIRECTIVE.sub(lambda match: render(match.group(1)), markdown))
