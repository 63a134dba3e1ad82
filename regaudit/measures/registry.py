"""The measure registry: every measure regaudit records, declared once, beside the function
that computes it.

A declaration gives the measure's name (the `measure` column of the tables and the last
part of its metric key `regaudit/<layer>/<measure>`), its table, its scope (one value per
tapped layer, per model output, per noise source, per run), its unit, whether it is a
headline (also logged as an MLflow metric, not only in Parquet) and its definition: the
docstring of the function that computes it (formula and source), or a text for a value
computed inline. Every other module imports the name constant the declaration returns,
never a string; the documentation's table of measures is generated from here, and the
tests check that every measure a run logs is registered::

    MEAN = declare("mean", table=TABLE_ACTIVATIONS, scope=LAYER, unit=ACTIVATION,
                   doc=mean, headline=True)

A name with a `<placeholder>` is a template (`acc_at_k:<k>`): `fill` makes its names,
`lookup` finds the declaration of any name it makes.
"""

import inspect
import re
import sys
from dataclasses import dataclass

from regaudit.discovery import import_declaring

#: Scopes: where one value of the measure belongs.
LAYER = "layer"  # one value per tapped layer (its output, or a BN layer's input)
MODEL_WIDE = "model"  # one value per audit for the whole model: `regaudit/model/<measure>`
OUTPUT = "output"  # one value per model output: `model`, or `model:0`, `model:1`, ...
SOURCE = "source"  # one value per noise source (a Dropout layer, an RNN's dropout, ...)
EPOCH = "epoch"  # one value per epoch, from Keras' logs (the `history` table)
SCOPES = (LAYER, MODEL_WIDE, OUTPUT, SOURCE, EPOCH)

#: Units
ACTIVATION = "activation units"
FRACTION = "fraction in [0, 1]"
STD_UNITS = "reference standard deviations"
RATIO = "ratio (1 = no shift)"
STATISTIC = "statistic in [0, 1]"
PROBABILITY = "p-value in [0, 1]"
NATS = "nats"
COUNT = "count"
SECONDS = "seconds"
UNITLESS = "unitless"
COSINE = "cosine in [-1, 1]"
AS_LOGGED = "the unit of the Keras metric or loss"

#: how a module that declares measures reads: it imports `declare` from here
#: (`regaudit.discovery` finds and imports them all for `measures()`)
DECLARES = r"from regaudit\.measures\.registry import (\([^)]*|[^\n(]*)\bdeclare\b"

_PLACEHOLDER = re.compile(r"<(\w+)>")


@dataclass(frozen=True)
class Measure:
    """One declared measure (see the module's docstring)."""

    name: str
    table: str
    scope: str
    unit: str
    headline: bool
    doc: str
    module: str

    @property
    def pattern(self):
        """A regex matching every name this declaration makes (the name itself, or the
        template with any word in each placeholder)."""
        parts = _PLACEHOLDER.split(self.name)
        return re.compile("".join(re.escape(p) if i % 2 == 0 else r"\w+"
                                  for i, p in enumerate(parts)) + r"\Z")

    @property
    def summary(self):
        """The definition's first paragraph, on one line."""
        return " ".join(self.doc.split("\n\n")[0].split())


_DECLARED = {}


def declare(name, *, table, scope, unit, doc, headline=False):
    """Register a measure and return its name (the constant every other module imports).

    Args:
        name: the measure's name, or a template with `<placeholders>`.
        table: the table its rows go to (`regaudit.schema.TABLE_*`).
        scope: one of `SCOPES`.
        unit: what a value is measured in.
        doc: the function that computes it (its docstring holds formula and source), or
            the definition as text.
        headline: also logged as an MLflow metric at every audit (else Parquet only).
    """
    if scope not in SCOPES:
        raise ValueError(f"measure {name!r}: scope {scope!r} is not one of {SCOPES}")
    text = inspect.getdoc(doc) if callable(doc) else inspect.cleandoc(doc or "")
    if not text:
        raise ValueError(f"measure {name!r} has no definition: pass its function or a text")
    module = sys._getframe(1).f_globals.get("__name__", "?")
    previous = _DECLARED.get(name)
    if previous is not None and previous.module != module:
        raise ValueError(f"measure {name!r} is declared twice: in {previous.module} and {module}")
    _DECLARED[name] = Measure(name, table, scope, unit, bool(headline), text, module)
    return name


def fill(template, **values):
    """The name a template makes: `fill("acc_at_k:<k>", k=4)` is `acc_at_k:4`."""
    return _PLACEHOLDER.sub(lambda match: str(values[match.group(1)]), template)


def prefix(template):
    """The fixed part before a template's first placeholder (`acc_at_k:`)."""
    return _PLACEHOLDER.split(template)[0]


_COMPLETE = []  # set once every declaring module is imported


def measures():
    """{name: Measure} of every declared measure, in declaration order."""
    if not _COMPLETE:
        import_declaring(DECLARES)
        _COMPLETE.append(True)
    return dict(_DECLARED)


def lookup(name):
    """The declaration of a measure name as logged (`acc_at_k:4` finds `acc_at_k:<k>`),
    or None. A dictionary lookup for a declared name (the families ask it for every value
    of every audit); the templates are tried only for the names they make."""
    if not _COMPLETE:
        measures()
    found = _DECLARED.get(name)
    if found is not None:
        return found
    return next((m for m in _DECLARED.values() if "<" in m.name and m.pattern.match(name)), None)


def is_headline(name):
    """Whether the measure `name` is logged as an MLflow metric."""
    found = lookup(name)
    return bool(found and found.headline)


def headline_names(table=None):
    """The headline measures' names (of one table), in declaration order."""
    return tuple(m.name for m in measures().values()
                 if m.headline and (table is None or m.table == table))
