"""MkDocs hook: `::: regaudit.<module>.<name>` lines of a page become that object's
signature and docstring. mkdocstrings reads modules from the source tree, where
`callbacks/` and `reports/` are not under `regaudit/` (pyproject.toml installs them as
`regaudit.callbacks` and `regaudit.reports`), so the objects are imported instead."""

import importlib
import inspect
import re

DIRECTIVE = re.compile(r"^::: (regaudit(?:\.\w+)+)\s*$", re.M)


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
    return (f"### `{name}`\n\n*{kind}* `{path}`\n\n```python\n{signature}\n```\n\n{doc}\n")


def on_page_markdown(markdown, **kwargs):
    return DIRECTIVE.sub(lambda match: render(match.group(1)), markdown)
