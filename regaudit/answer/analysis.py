"""A set of runs analysed as one designed experiment: every question any rule asks of it
(the article's claims RA251-RA256, a study's recommendation RA260 and its Dropout x BN
interaction RA261) is a contrast of one linear model per outcome
(`regaudit.answer.contrasts.CellModel`, cells = the runs' groups, the study's
seeds measured for their correlation), and all of them are Holm-corrected together, once.

A rule declares its questions with `@asks` (a function `(runs, groups) -> [Question]`) and
reads its answers with `analyse(runs, groups).get(key)`; the analysis of the same runs,
groups, level and margin is computed once and shared by every rule.

The practical margin (`margin()`, `--margin`): a contrast of an accuracy (the final
validation accuracy, an accuracy-based generalization gap) whose 95% equivalence test
puts it within +-margin is "negligible". The default, 0.01 (one point of accuracy), is
the margin the ensemble claim RA257 already uses, and the seed-to-seed standard deviation
of a small model's validation accuracy (0.01-0.02 on the demo's digits): a difference
below it is below what one more seed moves. Losses have no natural unit, so a loss
contrast is never called negligible.
"""

import contextvars
from dataclasses import dataclass

import numpy as np

from regaudit.answer import outcomes
from regaudit.answer.contrasts import CellModel, holm_family, span_of
from regaudit.answer.finding import finding_rules, p_text
from regaudit.answer.statistics import level, scoped, stats
from regaudit.schema import MODEL

#: the default practical margin of an accuracy contrast (see the module)
DEFAULT_MARGIN = 0.01
_MARGIN = contextvars.ContextVar("regaudit_margin", default=DEFAULT_MARGIN)

#: the outcomes a question can be asked of
OUTCOME, GAP, FIRST_LOSS = "outcome", "gap", "first_loss"
#: the tag a study's trial carries its seed in (`regaudit.studies.runs.SEED_TAG`)
SEED_KEY = "seed"


def margin():
    return _MARGIN.get()


def with_margin(value):
    """Every analysis inside uses `value` as the practical margin of an accuracy."""
    return scoped(_MARGIN, float(value))


@dataclass
class Question:
    """A contrast a rule asks: `key` (its rule id, then what it compares), the `outcome`
    it is asked of, and `weights` {group: weight} summing to 0."""

    key: str
    outcome: str
    weights: dict
    #: True when only an improvement is asked about (a variant against the model as
    #: given): seeds are spent on it only while an improvement stays plausible
    improvement: bool = False


_SOURCES = []


def asks(function):
    """Declare `function(setups) -> [Question]` as a source of the study's questions, given
    {group: its runs' common setup} (`regaudit.answer.outcomes.group_setups`)."""
    _SOURCES.append(function)
    return function


def questions_of(setups):
    """{key: Question} every declared source asks of groups with these setups."""
    finding_rules()  # imports every module that declares questions
    return {q.key: q for source in _SOURCES for q in source(setups)}


def first_epoch_loss(runs):
    """{run: training loss after the first epoch}: how far one epoch gets."""
    history = runs.history
    if not len(history):
        return {}
    loss = history[(history.measure == "loss") & (history.layer == MODEL)]
    first = loss[loss.epoch == loss.run.map(loss.groupby("run")["epoch"].min())]
    return {r: float(v) for r, v in zip(first.run, first.value) if np.isfinite(v)}


def outcome_values(runs, kind):
    """(measure, {run: value}, higher is better, bounds, margin or NaN) of an outcome kind."""
    if kind == OUTCOME:
        measure, values, higher, bounds = outcomes.outcome(runs)
        accuracy = bounds == (0.0, 1.0)
        return measure, values, higher, bounds, margin() if accuracy else float("nan")
    if kind == GAP:
        name, gaps = outcomes.final_gap(runs)
        accuracy = name == outcomes.GEN_GAP_ACC
        return (name, gaps, False, (-1.0, 1.0) if accuracy else (-np.inf, np.inf),
                margin() if accuracy else float("nan"))
    return "mean training loss in epoch 1", first_epoch_loss(runs), False, (0.0, np.inf), float("nan")


def answer(questions, models, outcomes_):
    """({key: Estimate}, family size): every question answered by its outcome's model
    (`models` {kind: CellModel or None}, `outcomes_` {kind: outcome_values(...)}) and all
    Holm-corrected together."""
    estimates = {}
    for key, question in questions.items():
        model = models.get(question.outcome)
        _, _, _, bounds, margin_ = outcomes_[question.outcome]
        found = model.contrast(question.weights, bounds, margin_) if model is not None else None
        if found is not None:
            estimates[key] = found
    family = holm_family(list(estimates.values()))
    simultaneous(estimates, questions, outcomes_, family)
    return estimates, family


def simultaneous(estimates, questions, outcomes_, family):
    """Each estimate's interval made simultaneous over the family (Bonferroni at 1 - level
    / family, within the quantity's bounds): an interval that excludes 0 then agrees with
    a Holm-adjusted p below the level."""
    usable = [(key, found) for key, found in estimates.items() if found.se > 0 and found.df > 0]
    if not usable:
        return
    quantiles = stats.t.ppf(1 - level() / max(1, family) / 2, np.array([f.df for _, f in usable]))
    for (key, found), quantile in zip(usable, quantiles):
        half = float(quantile * found.se)
        limit = span_of(found.cells, outcomes_[questions[key].outcome][3])
        found.low, found.high = max(-limit, found.estimate - half), min(limit, found.estimate + half)


class Analysis:
    """Every question of every source, answered by one model per outcome and Holm-corrected
    together: `get(key)` -> `Estimate` or None, `model(kind)`, `outcome(kind)`, `family`
    (the number of contrasts, Holm's first divisor), `questions` {key: Question}."""

    def __init__(self, runs, groups):
        self.runs, self.groups = runs, groups
        #: {group: its runs' common setup} (`outcomes.group_setups`), shared with the rules
        self.setups = outcomes.group_setups(runs, groups) if len(runs.history) else {}
        self.questions = questions_of(self.setups)
        self._seeds = outcomes.tag_values(runs, SEED_KEY)
        self._outcomes, self._models = {}, {}
        for kind in {q.outcome for q in self.questions.values()} | {OUTCOME}:
            self.model(kind)
        self.estimates, self.family = answer(self.questions, self._models, self._outcomes)

    def outcome(self, kind):
        """(measure, {run: value}, higher is better, bounds, margin) of an outcome kind."""
        if kind not in self._outcomes:
            self._outcomes[kind] = outcome_values(self.runs, kind)
        return self._outcomes[kind]

    def model(self, kind):
        if kind not in self._models:
            values = self.outcome(kind)[1]
            self._models[kind] = CellModel(values, self.groups, self._seeds) if values else None
        return self._models[kind]

    def get(self, key):
        return self.estimates.get(key)

    def mean(self, kind, group):
        model = self.model(kind)
        return model.mean(group) if model is not None and group in model.counts else float("nan")


_LAST = {}


def analyse(runs, groups):
    """The `Analysis` of these runs and groups at the current level and margin (computed
    once: every rule of one report shares it)."""
    key = (id(runs), tuple(runs.run_ids), tuple(sorted(groups.items())), level(), margin())
    if _LAST.get("key") != key:
        _LAST.clear()
        _LAST.update(key=key, analysis=Analysis(runs, groups))
    return _LAST["analysis"]


def confidence_text():
    """'95%' (or '95.14%' at a sequential look's level): the simultaneous intervals' confidence."""
    confidence = 1 - level()
    return f"{confidence:.0%}" if round(confidence, 2) == confidence else f"{confidence:.2%}"


def contrast_text(found):
    """'+0.0123, simultaneous 95% interval [+0.004, +0.021], Holm-adjusted p = 0.003' of an
    Estimate (its interval simultaneous over the study's contrasts: `simultaneous`)."""
    return (f"{found.estimate:+.3g}, simultaneous {confidence_text()} interval [{found.low:+.3g}, "
            f"{found.high:+.3g}], Holm-adjusted {p_text(found.p_holm)}")


def model_text(model):
    """Which model answered: its runs and groups, robust errors."""
    return f"one linear model over {len(model.y)} runs in {len(model.cells)} groups, robust errors"
