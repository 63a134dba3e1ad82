"""Numbers for people: a value at the precision its uncertainty supports, one function for
the report, the terminal and the findings' short forms.

A mean of 0.98431 with an interval half as wide as 0.012 prints as 0.984: the digits past
the interval's second significant digit are noise. A value with no uncertainty known
prints with 3 significant digits. An interval's ends print at the same precision as its
estimate.
"""

import math

#: significant digits of a value whose uncertainty is unknown
DIGITS = 3


def decimals_for(error):
    """How many decimals show `error`'s two significant digits (None: unknown)."""
    if error is None or not math.isfinite(error) or error <= 0:
        return None
    return max(0, 1 - math.floor(math.log10(error)))


def shown(value, error=None, signed=False):
    """`value` as a person reads it: to the decimals its `error` (an interval's half
    width, a standard error) supports, else 3 significant digits; "n/a" when missing."""
    if value is None or not math.isfinite(value):
        return "n/a"
    sign = "+" if signed else ""
    places = decimals_for(error)
    if places is None:
        return f"{value:{sign}.{DIGITS}g}"
    return f"{value:{sign}.{min(places, 12)}f}"


def interval(estimate, low, high, signed=False):
    """'0.984 [0.972, 0.996]': the estimate and its interval at one precision (the
    interval's half width decides it)."""
    if not all(v is not None and math.isfinite(v) for v in (low, high)):
        return shown(estimate, signed=signed)
    error = (high - low) / 2 or None
    return (f"{shown(estimate, error, signed)} [{shown(low, error, signed)}, "
            f"{shown(high, error, signed)}]")


def same_at(a, b, error=None):
    """Whether `a` and `b` print alike at the precision of `error` (a tie to a reader)."""
    return shown(a, error) == shown(b, error)
