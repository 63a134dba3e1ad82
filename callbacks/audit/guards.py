"""Invariant 2 of the design: a failing measure never stops training.

`Guards` runs each measure and each whole step of the audit: a measure that raises is
switched off for its layer (one warning), a step that raises switches the audit off for
the fit (one warning); with `strict=True` both raise instead (for tests and debugging).
"""

import warnings

from regaudit.errors import RegauditError, RegauditWarning


class Guards:
    """The audit's guards for one fit.

    Args:
        strict: raise instead of warning and switching off.

    Attributes:
        on: whether the audit runs in this fit (a failed step turns it off).
        off: the (layer, measure) pairs switched off after a failure.
    """

    def __init__(self, strict=False):
        self.strict = strict
        self.on = False
        self.off = set()

    def guarded(self, layer, measure, function, *args):
        """`function(*args)`, or None when it raised now or before on this layer."""
        if (layer, measure) in self.off:
            return None
        try:
            return function(*args)
        except Exception as error:
            if self.strict:
                raise
            self.off.add((layer, measure))
            warnings.warn(
                f"regaudit: measure '{measure}' failed on layer '{layer}' "
                f"({type(error).__name__}: {error}); it is switched off for this layer "
                "and training goes on.",
                RegauditWarning,
                stacklevel=2,
            )
            return None

    def step(self, what, function, *args):
        """Run a whole step of the audit; on failure warn once and switch the audit off."""
        try:
            return function(*args)
        except Exception as error:
            if self.strict:
                raise
            self.on = False
            detail = str(error) if isinstance(error, RegauditError) else f"{type(error).__name__}: {error}"
            warnings.warn(
                f"regaudit: {what} failed ({detail}); the audit is switched off for this "
                "fit and training goes on.",
                RegauditWarning,
                stacklevel=2,
            )
            return None
