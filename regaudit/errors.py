"""The one exception family regaudit raises on purpose; the CLI turns it into one line."""


class RegauditError(Exception):
    """Bad input or an unusable store, said in one line: what was received, what was
    expected, and how to fix it."""

    exit_code = 1


class UsageError(RegauditError, ValueError):
    """An argument or setting outside its allowed range (raised at the boundary); also a
    `ValueError`, as scikit-learn's `InvalidParameterError`, so code that catches bad
    values catches it."""

    exit_code = 2


class RegauditWarning(UserWarning):
    """A measure or an audit step failed and was switched off; training went on."""


def error_line(error, limit=200):
    """The first line of an error's message, at most `limit` characters, with
    credentials redacted (`regaudit.tracking.secrets`); "" when it has none. Every one-line
    message regaudit prints about someone else's error takes it from here."""
    from regaudit.tracking.secrets import redact

    text = str(error).strip()
    return redact(text.splitlines()[0][:limit]) if text else ""
