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


#: lines that open a framework's error message without saying what went wrong
#: (TensorFlow's graph errors start with these, the stack of the op's definition follows)
PREAMBLES = ("Graph execution error", "Detected at node", "Traceback (most recent call last)")


def error_line(error, limit=200):
    """The first line of an error's message that says what went wrong (not a framework's
    preamble such as TensorFlow's "Graph execution error:", nor a stack frame), at most
    `limit` characters, with credentials redacted (`regaudit.tracking.secrets`); "" when
    it has none. Every one-line message regaudit prints about someone else's error takes
    it from here."""
    from regaudit.tracking.secrets import redact

    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    said = [line for line in lines if not line.startswith(PREAMBLES + ("File \"", "[["))]
    return redact((said or lines or [""])[0][:limit])


class Interrupted(RegauditError):
    """Work stopped by the user (Ctrl-C) before it was complete; the shell's exit code for
    SIGINT. Its message says what was done and how to resume."""

    exit_code = 130

    def __init__(self, message, **said):
        super().__init__(message)
        #: what the message says as data (for a caller that says it otherwise)
        self.said = said
