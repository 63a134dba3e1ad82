"""What a finding is, and the sentences every rule shares.

A `Finding` is data first: a stable rule id (`RA2xx`; lint's rules are `RA1xx`), the
rule's name, a level, one plain-language text, and the numbers behind the text. The
JSON form (`as_dict`) is what `regaudit show --json` prints; its schema is in the README.
"""

from dataclasses import dataclass, field

import numpy as np

from regaudit.answer.levels import FINDING_LEVELS, INFO
from regaudit.answer.precision import shown
from regaudit.answer.statistics import ALPHA, MAX_SEEDS, POWER
from regaudit.discovery import import_declaring

#: levels, most important first: "notice" is worth acting on, "info" is context
LEVELS = FINDING_LEVELS


#: how a module that declares finding rules reads (`regaudit.discovery` finds and
#: imports them all for `finding_rules()`)
DECLARES = r"@finding_rule\("
_RULES = []


def finding_rule(*ids, order, summary, evidence=(), titles=None):
    """Declare a finding rule: the decorated `rule(runs, groups)` returns its findings
    (with ids among `ids`), its docstring states what it finds, its threshold and its
    source. `order`: where its findings come in the report (notices first, then by
    order); `summary`: the one line the documentation's table of findings shows;
    `evidence`: the measures it reads; `titles`: {id: the few words that head its findings'
    block in the report and the terminal} (default: the summary). `finding_rules()`, the
    report and the documentation read the declarations."""
    def declare(function):
        declared = {i for rule in _RULES if rule is not function for i in rule.ids}
        if declared & set(ids):
            raise ValueError(f"finding ids {sorted(declared & set(ids))} are declared twice")
        function.ids, function.order, function.summary = ids, order, summary
        function.evidence = tuple(evidence)
        function.titles = {i: (titles or {}).get(i, summary) for i in ids}
        _RULES.append(function)
        return function

    return declare


def rule_titles():
    """{finding id: the title of its block}, from every rule's declaration."""
    return {i: title for rule in finding_rules() for i, title in rule.titles.items()}


def finding_rules():
    """Every declared finding rule, in report order."""
    import_declaring(DECLARES)
    return sorted(_RULES, key=lambda rule: rule.order)


@dataclass
class Finding:
    """One statement: `id` (stable, `RA2xx`), `rule` (its name), `text` in plain words,
    `numbers` behind it, `level` "notice" (worth acting on) or "info". For the grouped
    view (`regaudit.answer.grouped`): `about`, what it concerns (a variant, a layer, a run,
    a pair); `brief`, its consequence in a few words with its number; `weight`, how much
    it matters among its rule's findings (the larger first)."""

    id: str
    rule: str
    text: str
    numbers: dict = field(default_factory=dict)
    level: str = INFO
    about: str = ""
    brief: str = ""
    weight: float = 0.0

    @property
    def short(self):
        """Its consequence in a few words: `brief`, else its text cut to one line."""
        return self.brief or one_line(self.text, 90)

    def as_dict(self):
        return {"id": self.id, "rule": self.rule, "level": self.level, "text": self.text,
                "about": self.about, "brief": self.short, "numbers": _plain(self.numbers)}


def _plain(value):
    """JSON-ready: numpy scalars as Python numbers, NaN/inf as None, tuples as lists."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    return value


def number(value, digits=4):
    """A value as the report prints it: `digits` significant digits, "n/a" for NaN."""
    if value is None or not np.isfinite(value):
        return "n/a"
    return f"{value:.{digits}g}"


def one_line(text, width=100):
    """`text` in at most `width` characters, cut at a word boundary (never inside a number
    or a name) and marked with " ..." (apart, so a whole number does not read as cut)."""
    text = " ".join(text.split())
    if len(text) <= width:
        return text
    cut = text[:width - 4].rstrip()
    if " " in cut and text[len(cut)] != " ":
        cut = cut.rsplit(" ", 1)[0]
    return cut.rstrip(" ,;:(") + " ..."


def p_text(p):
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def seeds_text(seeds):
    return f"more than {MAX_SEEDS}" if seeds > MAX_SEEDS else f"about {seeds}"


def comparison_text(c, measure, high_means, span=float("inf")):
    """The sentence of one `statistics.Comparison` on `measure`. `high_means` says what
    the higher value means ("better", "worse", "more overfitting") and is said once;
    `span`: the widest difference the measure allows (1 for an accuracy), beyond which a
    detectable difference is not one."""
    error = c.sd * np.sqrt(1 / c.n_high + 1 / c.n_low) if np.isfinite(c.sd) and c.sd > 0 else None
    values = (f"{shown(c.mean_high, error)} against {shown(c.mean_low, error)}, n = {c.n_high} and "
              f"{c.n_low} runs")
    test = (f"Welch t-test {p_text(c.p)}, Holm-adjusted {p_text(c.p_holm)} over {c.family} "
            f"comparison{'s' if c.family > 1 else ''}")
    if c.significant:
        return (f"'{c.high}' has a higher {measure} than '{c.low}' ({high_means}): "
                f"difference {shown(c.difference, error)} ({values}; {test}; Hedges' g = {c.g:.2f}).")
    if np.isfinite(c.detectable) and c.detectable >= span:
        power = (f" These seeds cannot detect any difference in {measure} (it would take more than "
                 "its whole range): train more seeds.")
    elif np.isfinite(c.detectable):
        power = (f" With these seeds only a difference of {shown(c.detectable)} or more would be "
                 f"detected with {POWER:.0%} power; the observed {shown(c.difference, error)} would need "
                 f"{seeds_text(c.seeds)} seeds per group.")
    else:
        power = " The seeds gave identical values, so the runs cannot say what they could detect."
    return (f"No detectable difference in {measure} between '{c.high}' and '{c.low}' "
            f"({values}; {test}).{power}")


#: the words of a test's result, everywhere the report states one
SIGNIFICANT = "significant"
NO_DIFFERENCE = "no detectable difference"
NO_TEST = "one run per group: no test"


def significance_words(c):
    """"significant, Holm-adjusted p = ..." or "no detectable difference, ..." for a
    comparison, or the reason there is no test."""
    if c is None:
        return NO_TEST
    return f"{SIGNIFICANT if c.significant else NO_DIFFERENCE}, Holm-adjusted {p_text(c.p_holm)}"


#: a finding names at most this many runs, then says how many more (a report on hundreds
#: of runs stays readable; every run is in the finding's numbers, `regaudit show --json`)
NAMES_SHOWN = 8


def names_text(names, shown=NAMES_SHOWN, separator=", "):
    """'a, b, c' or, past `shown` names, 'a, ..., h and 92 more' ("" for none)."""
    names = [str(name) for name in names]
    if not names:
        return ""
    if len(names) <= shown:
        return separator.join(names)
    return f"{separator.join(names[:shown])} and {len(names) - shown} more"


def values_text(values, total, percent=False):
    """("0.25", "run a") or ("0.13 to 0.17", "2 of 4 runs (a, b)")."""
    low, high = min(values.values()), max(values.values())
    fmt = (lambda v: f"{v:.0%}") if percent else (lambda v: f"{v:.2f}")
    amount = fmt(low) if len(values) == 1 or low == high else f"{fmt(low)} to {fmt(high)}"
    runs = names_text(values)
    where = f"run {runs}" if len(values) == 1 and total == 1 else f"{len(values)} of {total} runs ({runs})"
    return amount, where


def per_layer(final, flagged, names):
    """[(layer, {run name: value}, runs with that layer)] of the flagged rows, layers in
    first-seen order: one finding per layer, not one per run."""
    out = []
    for layer in dict.fromkeys(flagged.layer):
        rows = flagged[flagged.layer == layer]
        values = {names.get(r, r): float(v) for r, v in zip(rows.run, rows.value)}
        out.append((layer, values, int(final[final.layer == layer].run.nunique())))
    return out


__all__ = ["ALPHA", "Finding", "LEVELS", "NAMES_SHOWN", "comparison_text", "names_text", "number",
           "one_line", "rule_titles",
           "p_text", "per_layer",
           "seeds_text", "significance_words", "values_text", "finding_rule", "finding_rules", "SIGNIFICANT", "NO_DIFFERENCE",
           "NO_TEST"]
