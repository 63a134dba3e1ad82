"""The moving-average arithmetic of BatchNormalization's statistics against a simulated
exponential moving average and the closed forms."""

import math

import numpy as np
import pytest

from regaudit.measures import batchnorm_lag as lag


def simulated_initial_weight(momentum, steps):
    """Keras' update, run: moving = m * moving + (1 - m) * batch, from moving = 1 with
    every batch statistic 0, so what is left is the initial value's weight."""
    moving = 1.0
    for _ in range(steps):
        moving = momentum * moving + (1 - momentum) * 0.0
    return moving


@pytest.mark.parametrize("momentum", [0.5, 0.9, 0.99, 0.999])
def test_the_initial_weight_and_the_steps_to_forget_it(momentum):
    for steps in (0, 1, 7, 100):
        assert lag.initial_weight(momentum, steps) == pytest.approx(simulated_initial_weight(momentum, steps), rel=1e-12)
    n = lag.steps_to_forget(momentum)
    assert lag.initial_weight(momentum, n) <= lag.LAG_SHARE < lag.initial_weight(momentum, n - 1)
    assert lag.steps_to_forget(1.0) == math.inf and lag.steps_to_forget(0.0) == 1


@pytest.mark.parametrize("steps", [10, 460, 5000])
def test_the_momentum_that_converges_in_the_planned_steps(steps):
    momentum = lag.momentum_for(steps)
    assert lag.initial_weight(momentum, steps) <= lag.LAG_SHARE
    assert lag.initial_weight(momentum + 0.01, steps) > lag.LAG_SHARE or momentum + 0.01 >= 1


def test_steps_to_catch_up_an_input_of_small_variance():
    # caught up when the initial value's weight m^n is under `share` of the moving
    # variance m^n + v (the data's part taken as v: m^n is small by then)
    for momentum, variance in ((0.99, 0.001), (0.9, 0.05), (0.99, 0.3)):
        n = lag.steps_to_catch_up(momentum, variance)
        w = np.array([lag.initial_weight(momentum, k) for k in (n - 1, n)])
        share = w / (w + variance)
        assert share[1] < lag.LAG_SHARE < share[0]
    assert lag.steps_to_catch_up(0.99, 200.0) == 0  # an input far above 1 never lags
