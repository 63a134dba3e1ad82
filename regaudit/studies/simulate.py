"""What a seeds policy costs and what it finds, by simulation: studies whose outcomes are
drawn from stated truths and analysed exactly as `regaudit.study` analyses them (the one
linear model per outcome, every question a contrast, Holm over the study, the looks of
`regaudit.studies.sequential`).

The variants' setups are those of a model like the seed article's (two Dropout layers,
0.25 and 0.5, BN after the activation) rewritten by the design's levels, so the questions
are the ones a real study of that model asks. Each run's outcome is its variant's true
mean plus a seed effect shared by every variant of that seed (the common random numbers
a study arranges) plus independent noise. Used by the seeds-policy simulation in
`benchmarks/seeds_policy.py` (the tables in docs/study.md), the tests, and the dry run's
expected number of trainings.
"""

import numpy as np

from regaudit.answer.analysis import FIRST_LOSS, GAP, OUTCOME, answer, questions_of
from regaudit.answer.contrasts import CellModel
from regaudit.studies import design as designs
from regaudit.studies.recommend import RULE, key_of
from regaudit.studies.sequential import DEFAULT_SPENDING, look_level, next_look

#: the seed article's third model as given: Dropout 0.25 and 0.5, BN after the activation
ARTICLE_SETUP = {"dropout": True, "batchnorm": True, "rates": [0.25, 0.5], "placement": "after_activation",
                 "dropout_before_batchnorm": [], "lr": 1.0, "others": ()}
PLACEMENTS = {"none": "none", "after": "after_activation", "before": "before_activation"}
#: what a simulated outcome is: (bounds, whether the margin applies)
KINDS = {OUTCOME: ((0.0, 1.0), True), GAP: ((-1.0, 1.0), True), FIRST_LOSS: ((0.0, np.inf), False)}


def setup_of(levels, given=ARTICLE_SETUP):
    """The regularization setup of the variant `levels` of a model set up as `given`."""
    setup = dict(given)
    if "dropout" in levels:
        rate = float(levels["dropout"])
        setup["dropout"] = rate > 0
        setup["rates"] = [rate] * max(1, len(given["rates"])) if rate > 0 else []
    if "bn" in levels:
        setup["batchnorm"] = levels["bn"] != "none"
        setup["placement"] = PLACEMENTS[levels["bn"]]
    setup["lr"] = float(levels.get("lr", 1.0))
    setup["others"] = tuple(sorted((k, str(v)) for k, v in levels.items() if k not in ("dropout", "bn")))
    return setup


def design_questions(design, given=ARTICLE_SETUP):
    """({variant: setup}, {key: Question}) of a design on a model set up as `given`."""
    setups = {variant: setup_of(levels, given) for variant, levels in designs.variants(design)}
    return setups, questions_of(setups)


def one_study(questions, cells, truth, rng, seeds, max_seeds, sd, seed_sd=0.0, margin=0.01,
              spending=DEFAULT_SPENDING, higher=True, plausible_at=None, balanced=False):
    """One simulated study: ({question key: "up", "down", "negligible" or None}, trainings).
    `truth` {kind: {cell: true mean}} (a missing cell: 0); `sd` the seed-to-seed standard
    deviation of every cell, or {cell: sd} (heteroscedastic); `balanced`: every variant
    gets the seeds an open question asks for (the policy before racing)."""
    kinds = sorted({q.outcome for q in questions.values()})  # a fixed order: the draws reproduce
    spread = sd if isinstance(sd, dict) else {c: sd for c in cells}
    draws = {kind: {c: truth.get(kind, {}).get(c, 0.0) + rng.normal(0, spread[c], max_seeds) for c in cells}
             for kind in kinds}
    for kind in kinds:
        shared = rng.normal(0, seed_sd, max_seeds)
        for cell in cells:
            draws[kind][cell] = draws[kind][cell] + shared
    counts, previous = {c: seeds for c in cells}, 0
    while True:
        most = max(counts.values())
        level = look_level(most, previous, max_seeds, spending=spending)
        models, outcomes_ = {}, {}
        for kind in kinds:
            values = {(c, s): float(draws[kind][c][s]) for c in cells for s in range(counts[c])}
            models[kind] = CellModel(values, {r: r[0] for r in values}, {r: r[1] for r in values})
            bounds, with_margin = KINDS[kind]
            outcomes_[kind] = (kind, values, higher, bounds, margin if with_margin else np.nan)
        estimates, family = answer(questions, models, outcomes_)
        if most >= max_seeds:
            break
        decision = next_look(estimates, family, questions, higher, counts, max_seeds, level, spending,
                             plausible_at)
        if decision.seeds is None:
            break
        if balanced:  # the policy before racing: every variant gets the seeds one question asks
            decision.seeds = {c: max(decision.seeds.values()) for c in cells}
        counts.update(decision.seeds)
        previous = most
    verdicts = {}
    for key, found in estimates.items():
        decided = found.decided(level)
        verdicts[key] = ("up" if found.estimate > 0 else "down") if decided == "difference" else decided
    return verdicts, sum(counts.values())


def simulate(design, truth, n, seeds, max_seeds, sd, seed_sd=0.0, margin=0.01, spending=DEFAULT_SPENDING,
             rng=None, given=ARTICLE_SETUP, plausible_at=None, balanced=False):
    """`n` simulated studies of `design`: ({key: {verdict: share of studies}}, mean trainings,
    [trainings of each study]); the recommendation's rule id holds the share of studies whose
    recommendation names a variant (any variant shown better than the model as given)."""
    rng = rng if rng is not None else np.random.default_rng(0)
    setups, questions = design_questions(design, given)
    cells = list(setups)
    shares, trainings = {}, []
    for _ in range(n):
        verdicts, trained = one_study(questions, cells, truth, rng, seeds, max_seeds, sd, seed_sd, margin,
                                      spending, plausible_at=plausible_at, balanced=balanced)
        trainings.append(trained)
        named = any(k.startswith(key_of("")) and v == "up" for k, v in verdicts.items())
        verdicts[RULE[0]] = "names a variant" if named else None
        for key, verdict in verdicts.items():
            shares.setdefault(key, {}).setdefault(verdict, 0)
            shares[key][verdict] += 1 / n
    return shares, float(np.mean(trainings)), trainings


def expected_trainings(design, seeds, max_seeds, spending=DEFAULT_SPENDING, n=100, margin=0.01):
    """(trainings if no variant differs, trainings with one variant better than the model
    as given by the difference `max_seeds` seeds detect with 90% power), each the mean of
    `n` simulated studies; the policy's cost is scale-free, so sd = 1 and the margin in
    units of a typical seed-to-seed sd of accuracy (0.015)."""
    from regaudit.answer.statistics import stats

    if max_seeds <= seeds:
        count = len(designs.trials(design, seeds))
        return float(count), float(count)
    setups, questions = design_questions(design)
    family = max(1, len(questions))
    df = 2 * (max_seeds - 1)
    effect = float((stats.t.ppf(1 - 0.05 / family / 2, df) + stats.t.ppf(0.9, df)) * np.sqrt(2 / max_seeds))
    best = next((v for v in setups if v != designs.GIVEN), None)
    rng = np.random.default_rng(0)
    _, null, _ = simulate(design, {}, n, seeds, max_seeds, 1.0, 0.0, margin / 0.015, spending, rng)
    _, found, _ = simulate(design, {OUTCOME: {best: effect}}, n, seeds, max_seeds, 1.0, 0.0, margin / 0.015,
                           spending, rng)
    return null, found
