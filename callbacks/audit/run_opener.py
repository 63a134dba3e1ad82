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
import warnings

from regaudit.measures.timing import AUDIT_SECONDS
from regaudit.errors import RegauditWarning
from regaudit.schema import MODEL, metric_key
from regaudit.tracking.storage import RunWriter
from regaudit.tracking.store import activate_run, join_or_start_run

from regaudit.callbacks.audit import fits


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


class OpensItsRun:
    """The part of `regaudit.callbacks.audit.hooks.Audit` that opens the fit's run (inline or
    with a `RunOpener`) and takes it over in the fit's thread: `run_id`, the writer, the
    run's first tags and files, the writes held while it opens."""

    @property
    def run_id(self):
        """The MLflow run this fit's audits go to (a run still opening in the background
        is waited for); `pending-<hex>` while the tracking store could not create it."""
        if self._opener is not None:
            return self._opener.run_id
        return self._run_id

    @run_id.setter
    def run_id(self, value):
        self._run_id = value

    def _open_run(self, tags, files, activate):
        """Join or start the fit's run and write its first tags and JSON files (MLflow's
        side of the setup: inline, or in `RunOpener`'s thread, which says nothing itself)."""
        run_id, started, pending = join_or_start_run(timeout=self.write_timeout, activate=activate)
        writer = RunWriter(run_id)
        if pending is not None:
            writer.create_pending(pending)
        writer.begin(self.write_timeout)
        index = writer.next_part_index()
        # an earlier fit audited this run: which steps it holds
        steps = writer.logged_steps(metric_key(MODEL, AUDIT_SECONDS)) if index > 0 else set()
        writer.set_tags(tags)
        for name, payload in files:
            writer.log_json(name, payload)
        return {"run_id": writer.run_id, "started": started, "pending": pending, "writer": writer,
                "index": index, "steps": steps, "activate": activate}

    def _take_run(self, opened):
        """In the fit's thread: the opened run becomes this fit's (`_open_run`'s result)."""
        self.writer, self._started_run = opened["writer"], opened["started"]
        self.run_id, self._audit_index = opened["run_id"], opened["index"]
        self._steps_written = opened["steps"]
        pending = opened["pending"]
        if self._started_run:
            fits.hook_exit()  # a fit that never ends still ends its run, as KILLED or FAILED
            if pending is None and not opened["activate"]:
                activate_run(self.run_id, self.write_timeout)
        if pending is not None:
            warnings.warn(
                f"regaudit: no MLflow run could be created ({pending['reason']}); the audit goes on "
                f"and is kept in the local spool as run {self.run_id} ({self.writer.spool.path}). "
                "When the tracking server is back, `regaudit sync` creates the run, sends "
                "everything and prints the run's id.", RegauditWarning, stacklevel=4)
        self._warn_spooled()

    def _opened(self, wait=True):
        """Whether the fit's run is open for writes now: a run opening in the background
        is taken over once it is open (`wait`: waiting for it), and what the audit held
        meanwhile is written; False when taking it over switched the audit off."""
        opener = self._opener
        if opener is None:
            return True
        if not wait and not opener.done:
            return False
        self._opener = None
        self._safely("setup", lambda: self._take_run(opener.wait()))
        held, self._held = self._held, []
        for kind, args in held if self._active else ():
            if kind == "tags":
                self._safely("MLflow write", self.writer.set_tags, *args)
                continue
            for rows in args[0].values():  # measured before the run had an id
                for row in rows:
                    row["run"] = row.get("run") or self._run_id
            self._safely("MLflow write", self._write, *args)
        return self._active

