"""The default seeds policy by simulation: studies drawn from stated truths and analysed
exactly as `regaudit.study` analyses them (`regaudit.studies.simulate`). Under no effect,
at most 5% of studies claim a difference on any one question, and at most 5% name a
variant in the recommendation (1,000 studies with equal variances, 500 with the seed
study's spread); under an effect the fixed design of 8 seeds detects with 95% power (the
t approximation at Holm's first step), the policy finds it at least 80% of the time
(300 studies) while training fewer seeds."""

import numpy as np
import pytest
from scipy import stats

from regaudit.answer.analysis import OUTCOME
from regaudit.studies import sequential
from regaudit.studies.simulate import design_questions, one_study, setup_of, simulate

DESIGN, SD = "dropout-x-bn", 0.015
#: the seed study's spread: BN variants' seed-to-seed sd up to 10x the others'
HETEROSCEDASTIC = {"as given": 0.05, "dropout=0,bn=none": 0.008, "dropout=0,bn=after": 0.04,
                   "dropout=0,bn=before": 0.12, "dropout=0.5,bn=none": 0.01, "dropout=0.5,bn=after": 0.09,
                   "dropout=0.5,bn=before": 0.16}


def bound(share, n):
    """The 99% binomial upper margin of a share of `n` studies."""
    return share + 2.58 * np.sqrt(share * (1 - share) / n)


@pytest.mark.parametrize("sd, n", [(SD, 1000), (HETEROSCEDASTIC, 500)], ids=["equal variances", "the seed study's spread"])
def test_under_no_effect_no_question_and_no_recommendation_errs_in_more_than_5_percent(sd, n):
    shares, trainings, each = simulate(DESIGN, {}, n, 3, 8, sd, 0.004, rng=np.random.default_rng(5))
    for key, verdicts in shares.items():
        wrong = verdicts.get("up", 0) + verdicts.get("down", 0) + verdicts.get("names a variant", 0)
        assert wrong <= bound(0.05, n), (key, verdicts)
    assert 7 * 3 <= min(each) and max(each) <= 7 * 8 and trainings < 7 * 8


def test_under_an_effect_the_policy_finds_it_at_least_80_percent_of_the_time():
    _, questions = design_questions(DESIGN)
    df = 2 * (8 - 1)
    effect = (stats.t.ppf(1 - 0.05 / len(questions) / 2, df) + stats.t.ppf(0.95, df)) * SD * np.sqrt(2 / 8)
    n = 300
    shares, trainings, _ = simulate(DESIGN, {OUTCOME: {"dropout=0.5,bn=before": effect}}, n, 3, 8, SD, 0.004,
                                    rng=np.random.default_rng(6))
    assert shares["RA260:dropout=0.5,bn=before"].get("up", 0) >= sequential_power_floor(n)
    assert trainings < 7 * 8  # racing: not every variant trained to 8 seeds


def sequential_power_floor(n):
    return 0.8 - 2.58 * np.sqrt(0.8 * 0.2 / n)


def test_racing_trains_fewer_seeds_than_giving_every_variant_the_seeds():
    setups, questions = design_questions(DESIGN)
    cells = list(setups)
    truth = {OUTCOME: {"dropout=0,bn=after": -0.05, "dropout=0.5,bn=before": 0.02}}
    racing = [one_study(questions, cells, truth, np.random.default_rng(s), 3, 8, SD)[1] for s in range(20)]
    balanced = [one_study(questions, cells, truth, np.random.default_rng(s), 3, 8, SD, balanced=True)[1]
                for s in range(20)]
    assert all(r <= b for r, b in zip(racing, balanced)) and np.mean(racing) < np.mean(balanced)
    assert setup_of({"dropout": 0.0, "bn": "before"})["placement"] == "before_activation"
    assert sequential.DEFAULT_SPENDING == "obrien-fleming" and sequential.PLAUSIBLE == 0.9
