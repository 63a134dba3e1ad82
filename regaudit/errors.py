"""The one exception family regaudit raises on purpose; the CLI turns it into one line."""


class RegauditError(Exception):
    """Bad input or an unusable store, said in one line: what was received, what was
    expected, and how to fix it."""

    exit_code = 1


class UsageError(RegauditError):
    """An argument or setting outside its allowed range (raised at the boundary)."""

    exit_code = 2


class RegauditWarning(UserWarning):
    """A measure or an audit step failed and was switched off; training went on."""
