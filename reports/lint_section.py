"""The report's lint section: what `regaudit lint` said about the architecture at train
begin, next to what the audit then measured at the same layer."""

import pandas as pd

from regaudit.answer import outcomes
from regaudit.answer.finding import names_text
from regaudit.answer.levels import LINT_LEVELS
from regaudit.model.lint_rules import RULES

#: lint rule id -> the measures that confirm or contradict it at the same layer
EVIDENCE = {rule.id: rule.evidence for rule in RULES if rule.evidence}
#: what speaks to a rule that no single measure at its layer does
ELSEWHERE = {rule.id: rule.elsewhere for rule in RULES if rule.elsewhere}


def lint_table(runs):
    """One row per distinct lint finding (id, severity, layer, message) with the runs it
    came from and, where a measure speaks to it, that measure's final value at the layer
    in each run ("bn_dropout_var_ratio 1.15-1.16")."""
    lint = runs.lint
    if not len(lint):
        return pd.DataFrame(columns=["id", "severity", "layer", "finding", "measured", "runs"])
    names = outcomes.run_names(runs)
    finals = {measure: outcomes.final_layers(runs.shift, measure)
              for measure in {m for ms in EVIDENCE.values() for m in ms}}
    rows = []
    for (rule, severity, layer, message), part in lint.groupby(
            ["id", "severity", "layer", "message"], sort=False):
        measured = []
        for measure in EVIDENCE.get(rule, ()):
            final = finals[measure]
            values = final[(final.layer == layer) & final.run.isin(set(part.run))].value
            if len(values):
                low, high = float(values.min()), float(values.max())
                span = f"{low:.3g}" if f"{low:.3g}" == f"{high:.3g}" else f"{low:.3g} to {high:.3g}"
                measured.append(f"{measure} {span}")
        rows.append({"id": rule, "severity": severity, "layer": layer, "finding": message,
                     "measured": "; ".join(measured) or ELSEWHERE.get(rule, ""),
                     "runs": names_text(names.get(r, r) for r in dict.fromkeys(part.run))})
    order = {level: i for i, level in enumerate(LINT_LEVELS)}
    return pd.DataFrame(rows).sort_values("severity", key=lambda s: s.map(order), kind="stable")
