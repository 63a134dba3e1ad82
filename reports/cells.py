"""How a table cell prints in the report, HTML and Markdown alike."""

import numpy as np

#: A cell longer than this (a run name or tag crafted to flood the page) is cut, saying so.
MAX_CELL = 300


def format_cell(value):
    """4 significant digits for floats, blank for missing, shapes as 28x28x1, text cut at
    MAX_CELL characters. Escaping is the renderer's job (HTML, Markdown)."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        text = "x".join(str(v) for v in value)
    else:
        text = str(value)
    if len(text) > MAX_CELL:
        return f"{text[:MAX_CELL]}... ({len(text):,} characters)"
    return text
