"""Opening the fit's MLflow run beside the training's first steps.

Importing MLflow (about 2 s on this project's machine), opening its store (a SQLite
store: about 1 s in each new process) and creating the run cost a short fit more than its
audits do. When the user's script has not imported MLflow, no run of theirs can be
active and autolog cannot be on, so regaudit's own run is certain: it is then opened in
a background thread while the model trains, and the audit made before the run exists
(the one before the first step) is held in memory and written as soon as the run is
there, at the latest at the end of the first epoch. Where MLflow is imported (the user's
`mlflow.start_run()`, autolog, a tuner's or a study's trial), the run is joined or
started at once, as before: which run the audit belongs to is decided in the fit's own
thread.

The thread only reaches MLflow (bounded by `write_timeout`, as every write); what it
would say (a pending run) is said by the fit's thread when it takes the run over, and an
error it meets switches the audit off there, as any setup error does.
"""

import sys
import threading


def in_background():
    """Whether the fit's run can be opened in the background: MLflow not imported yet."""
    return "mlflow" not in sys.modules


class RunOpener:
    """`open_run()` in a daemon thread; `wait()` returns its result or raises its error."""

    def __init__(self, open_run):
        self._open = open_run
        self._result = None
        self._error = None
        self.thread = threading.Thread(target=self._target, name="regaudit-open-run", daemon=True)
        self.thread.start()

    def _target(self):
        try:
            self._result = self._open()
        except BaseException as error:  # noqa: BLE001 - handed to the fit's thread
            self._error = error

    @property
    def done(self):
        return not self.thread.is_alive()

    def wait(self):
        self.thread.join()
        if self._error is not None:
            raise self._error
        return self._result

    @property
    def run_id(self):
        """The run's id once opened (waits for it), None when opening it failed."""
        self.thread.join()
        return None if self._result is None else self._result["run_id"]
