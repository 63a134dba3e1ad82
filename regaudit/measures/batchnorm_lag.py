"""BatchNormalization's moving statistics as an exponential moving average: how much of
their initial value (variance 1, mean 0) is left after n training steps, and how many
steps it takes to fall under a share. Keras updates them once per training step:
moving = momentum * moving + (1 - momentum) * batch statistic, so after n steps the
initial value weighs momentum ** n (Ioffe & Szegedy 2015; Keras' BatchNormalization).
The lint's RA109, the report's BN diagnosis (RA210, RA211) and `bn_init_share` read it
from here."""

import math

#: The moving statistics lag while more than this share of them is still their initial
#: value: momentum ** steps > LAG_SHARE.
LAG_SHARE = 0.01
#: Keras' default BatchNormalization momentum, for layer rows that lack it.
DEFAULT_MOMENTUM = 0.99


def initial_weight(momentum, steps):
    """momentum ** steps: the weight of the initial value in the moving statistics after
    `steps` updates."""
    return float(momentum) ** int(steps)


def steps_to_forget(momentum, share=LAG_SHARE):
    """Training steps after which `share` of an exponential moving average with this
    `momentum` is still its initial value: ceil(log(share) / log(momentum))."""
    if not 0 < momentum < 1:
        return math.inf if momentum >= 1 else 1
    return math.ceil(math.log(share) / math.log(momentum))


def momentum_for(steps, share=LAG_SHARE):
    """The largest momentum (two decimals, rounded down) whose initial value weighs at
    most `share` after `steps` steps: floor(share ** (1 / steps), 0.01)."""
    return math.floor(share ** (1 / steps) * 100) / 100


def steps_to_catch_up(momentum, variance, share=LAG_SHARE):
    """Steps from the start until the initial moving variance (1) is under `share` of the
    moving variance of an input of variance `variance`: m^n < share v / (1 - share)."""
    if not variance > 0:
        return steps_to_forget(momentum)
    target = share * variance / (1 - share)
    return 0 if target >= 1 else math.ceil(math.log(target) / math.log(momentum))


def current_variance(momentum, steps, share, ratio):
    """The input variance BN meets now, in the median channel: its moving variance is
    m^n / share (`bn_init_share`'s definition) and the observed variance is `ratio` times
    that (bn_var_ratio, a mean over channels: an estimate)."""
    if not share > 0:
        return float("nan")
    return ratio * initial_weight(momentum, steps) / share
