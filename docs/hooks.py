"""MkDocs hook: `::: regaudit.<module>.<name>` lines of a page become that object's
signature and docstring. mkdocstrings reads modules from the source tree, where
`callbacks/` and `reports/` are not under `regaudit/` (pyproject.toml installs them as
`regaudit.callbacks` and `regaudit.reports`), so the objects are imported instead."""

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


def on_page_markdown(markdown, **kwargs):
    return DIRECTIVE.sub(lambda match: render(match.group(1)), markdown)
