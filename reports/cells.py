"""How a table cell prints in the report, HTML and Markdown alike."""

import numpy as np


def format_cell(value):
    """4 significant digits for floats, blank for missing, shapes as 28x28x1."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return "x".join(str(v) for v in value)
    return str(value)
