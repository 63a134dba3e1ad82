"""The report's table of group comparisons (RA202, RA203): one row per pair, numbers for
people (`regaudit.answer.precision`), ties left out."""

import numpy as np
import pandas as pd

from regaudit.answer.finding import NO_DIFFERENCE, SIGNIFICANT
from regaudit.answer.run_findings import COMPARISONS
from regaudit.answer.precision import same_at, shown


def is_comparison(finding):
    """A group comparison (RA202, RA203 with a test): a row of the comparisons table."""
    return finding.id in COMPARISONS and "high" in finding.numbers


def comparison_table(found):
    """The group comparisons as a table, one row per pair: the higher group first, its
    difference, Welch's p, Holm's p over the family, Hedges' g (only for a significant
    difference: the size of a difference not shown means nothing) and the result in words.
    Ties (means that print alike at the precision their spread supports) are not listed;
    a detectable difference beyond the measure's range is said as none detectable."""
    rows = []
    for f in found:
        n = f.numbers
        error = _standard_error(n)
        if not n["significant"] and same_at(n["mean_high"], n["mean_low"], error):
            continue
        if n["significant"]:
            result = f"higher, {SIGNIFICANT}"
        else:
            detectable, span = n.get("detectable"), n.get("span", np.inf)
            seeds = n["seeds"]
            result = NO_DIFFERENCE
            if detectable is not None and np.isfinite(detectable) and detectable >= span:
                result += "; these seeds cannot detect any difference here"
            elif detectable is not None and np.isfinite(detectable):
                result += (f"; {shown(detectable)} detectable at 80% power; "
                           f"{'> 1000' if seeds > 1000 else seeds} seeds/group for this one")
        rows.append({"measure": n["measure"], "higher": n["high"], "lower": n["low"],
                     "means": f"{shown(n['mean_high'], error)} vs {shown(n['mean_low'], error)}",
                     "n": f"{n['n_high']}, {n['n_low']}", "difference": shown(n["difference"], error),
                     "Welch p": _p(n["p"]), "Holm p": _p(n["p_holm"]), "family": n["family"],
                     "Hedges g": f"{n['g']:.2f}" if n["significant"] and np.isfinite(n["g"]) else "",
                     "result": result})
    return pd.DataFrame(rows)


def _standard_error(numbers):
    """The standard error of a comparison's difference (Welch), from its pooled sd."""
    sd = numbers.get("sd")
    if sd is None or not np.isfinite(sd) or sd <= 0:
        return None
    return float(sd * np.sqrt(1 / numbers["n_high"] + 1 / numbers["n_low"]))


def _p(p):
    """A p-value for people: two significant digits, '< 0.001' below."""
    return "< 0.001" if p < 0.001 else f"{p:.2g}"
