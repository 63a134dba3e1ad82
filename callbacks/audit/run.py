"""The fit's MLflow run, owned by one object (`AuditRun`): opened, written within the
write budget (else spooled), replayed and ended.

Importing MLflow (about 2 s on this project's machine), opening its store (a SQLite
store: about 1 s in each new process) and creating the run cost a short fit more than its
audits do. When the user's script has not imported MLflow, no run of theirs can be
active and autolog cannot be on, so regaudit's own run is certain: it is then opened in
a background thread while the model trains (`RunOpener`), and the audit made before the
run exists (the one before the first step) is held in memory and written as soon as the
run is there, at the latest at the end of the first epoch. Where MLflow is imported (the
user's `mlflow.start_run()`, autolog, a tuner's or a study's trial), the run is joined or
started at once: which run the audit belongs to is decided in the fit's own thread.

The thread only reaches MLflow (bounded by `write_timeout`, as every write); what it
would say (a pending run) is said by the fit's thread when it takes the run over, and an
error it meets switches the audit off there, as any setup error does.
"""

import sys
import threading
import warnings

import pandas as pd

from regaudit.measures.timing import AUDIT_SECONDS
from regaudit.errors import RegauditWarning
from regaudit.schema import MODEL, metric_key
from regaudit.tracking.writer import RunWriter
from regaudit.tracking.run_opening import activate_run, join_or_start_run

from regaudit.callbacks.audit import fits
from regaudit.callbacks.audit.write_warnings import WriteWarnings

#: replay rounds of `write_timeout` seconds at train end while the store takes writes
FINAL_REPLAY_ROUNDS = 5


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


class AuditRun:
    """The fit's run: its writer, its id, its opening, the writes held while it opens,
    and the write budget.

    Args:
        timeout: the write budget in seconds (`write_timeout`).
        step_unit: "epoch" or "step": what an audit's MLflow step counts.
        guards: the audit's `Guards` (a failed write switches the audit off).
        metric_layers: the layers whose per-layer measures are logged as metrics.
    """

    def __init__(self, timeout, step_unit, guards, metric_layers=()):
        self.timeout = timeout
        self.step_unit = step_unit
        self.guards = guards
        self.metric_layers = set(metric_layers)
        self.writer = None
        self._run_id = None
        self._opener = None
        #: writes made before the run was open: ("tags", args) or ("write", args)
        self._held = []
        #: whether regaudit started the run (and so ends it)
        self.started = False
        self._part_index = 0
        #: MLflow steps an earlier fit already audited in this run (a resumed fit)
        self.steps_written = set()
        self.warnings = WriteWarnings()
        #: whether this fit's run opened in the background (`RunOpener`)
        self.opened_in_background = False

    # -- opening ---------------------------------------------------------------------

    def open(self, tags, files):
        """Open the fit's run with its first tags and JSON files: in the background when
        MLflow is not imported yet, else now."""
        self.opened_in_background = in_background()
        if self.opened_in_background:  # the run opens as the model trains
            self._opener = RunOpener(lambda: self._open_run(tags, files, activate=False))
        else:
            self._take_run(self._open_run(tags, files, activate=True))

    @property
    def run_id(self):
        """The MLflow run this fit's audits go to (a run still opening in the background
        is waited for); `pending-<hex>` while the tracking store could not create it."""
        if self._opener is not None:
            return self._opener.run_id
        return self._run_id

    @property
    def known_id(self):
        """The run's id as known now, without waiting: None while it opens."""
        return self._run_id

    def _open_run(self, tags, files, activate):
        """Join or start the fit's run and write its first tags and JSON files (inline, or
        in `RunOpener`'s thread, which says nothing itself)."""
        run_id, started, pending = join_or_start_run(timeout=self.timeout, activate=activate)
        writer = RunWriter(run_id)
        if pending is not None:
            writer.create_pending(pending)
        writer.begin(self.timeout)
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
        self.writer, self.started = opened["writer"], opened["started"]
        self._run_id, self._part_index = opened["run_id"], opened["index"]
        self.steps_written = opened["steps"]
        pending = opened["pending"]
        if self.started:
            fits.hook_exit()  # a fit that never ends still ends its run, as KILLED or FAILED
            if pending is None and not opened["activate"]:
                activate_run(self._run_id, self.timeout)
        if pending is not None:
            warnings.warn(
                f"regaudit: no MLflow run could be created ({pending['reason']}); the audit goes on "
                f"and is kept in the local spool as run {self._run_id} ({self.writer.spool.path}). "
                "When the tracking server is back, `regaudit sync` creates the run, sends "
                "everything and prints the run's id.", RegauditWarning, stacklevel=5)
        self.warn_spooled()

    def opened(self, wait=True):
        """Whether the fit's run is open for writes now: a run opening in the background
        is taken over once it is open (`wait`: waiting for it), and what was held
        meanwhile is written; False when taking it over switched the audit off."""
        opener = self._opener
        if opener is None:
            return True
        if not wait and not opener.done:
            return False
        self._opener = None
        self.guards.step("setup", lambda: self._take_run(opener.wait()))
        held, self._held = self._held, []
        for kind, args in held if self.guards.on else ():
            if kind == "tags":
                self.guards.step("MLflow write", self.writer.set_tags, *args)
                continue
            for rows in args[0].values():  # measured before the run had an id
                for row in rows:
                    row["run"] = row.get("run") or self._run_id
            self.guards.step("MLflow write", self.write, *args)
        return self.guards.on

    # -- writing ---------------------------------------------------------------------

    def set_tags(self, tags):
        if not self.opened(wait=False):
            self._held.append(("tags", (tags,)))
            return
        self.writer.set_tags(tags)

    def write(self, tables, metrics, epoch, step, keras_metrics=()):
        """One audit's tables and metrics, and Keras' epoch logs as run metrics
        [(MLflow step, values)], within the write budget (the spool replayed first)."""
        if not self.opened(wait=False):  # the run is still opening: written once it is
            self._held.append(("write", (tables, metrics, epoch, step, list(keras_metrics))))
            return
        self.writer.begin(self.timeout)  # replays the spool first, within the budget
        self._run_id = self.writer.run_id  # a pending run gets its MLflow id once created
        self.write_tables(tables)
        if metrics:
            self.write_metrics(metrics, epoch, step)
        for keras_step, values in keras_metrics:
            self.writer.log_metrics(values, keras_step)
        self.warn_spooled()

    def write_metrics(self, metrics, epoch, step):
        """Log {(layer, measure): value} as regaudit/<layer>/<measure> at the audit's step:
        model-wide measures always, per-layer ones for the metric layers (the rest is in
        the tables)."""
        self.writer.log_metrics(
            {metric_key(layer, measure): value for (layer, measure), value in metrics.items()
             if layer in self.metric_layers or layer == MODEL or layer.startswith(MODEL + ":")},
            self.mlflow_step(epoch, step),
        )

    def mlflow_step(self, epoch, step):
        """An audit's MLflow step: its epoch, or its optimizer step for step schedules."""
        return epoch if self.step_unit == "epoch" else step

    def write_tables(self, tables):
        """Store {table: rows} as the next audit part of each table (also outside a
        scheduled audit, as at train end)."""
        index = self._part_index
        self._part_index += 1
        for table, rows in tables.items():
            self.writer.log_table(table, index, pd.DataFrame(rows))

    def warn_spooled(self):
        """Say once per fit what happened to writes MLflow did not take."""
        self.warnings.after_writes(self.writer)

    # -- the end ---------------------------------------------------------------------

    def finish_writes(self):
        """At train end: replay the spool, again while a round's budget ran out with the
        store still taking writes (a server just back, slow under load, gets everything;
        one that does not answer costs one budget), at most FINAL_REPLAY_ROUNDS rounds;
        say what is left and how to send it."""
        replayed, left = self.writer.begin(self.timeout)
        for _ in range(FINAL_REPLAY_ROUNDS - 1):
            if not (replayed and left):
                break
            replayed, left = self.writer.begin(self.timeout)
        self.warn_spooled()
        self._run_id = self.writer.run_id  # a pending run created by the replays
        left = len(self.writer.spool.pending())
        if left:
            lost = (f" {self.writer.lost} other write(s) could not be kept ({self.writer.spool_error}) "
                    "and are lost." if self.writer.lost else "")
            # the spool's name: a run created from a pending one keeps its pending journal
            warnings.warn(
                f"regaudit: {left} audit writes could not reach MLflow by train end; they "
                f"wait in {self.writer.spool.path}: run `regaudit sync {self.writer.spool.run_id}` "
                f"when the tracking server is back.{lost}",
                RegauditWarning, stacklevel=2)

    def end(self, status):
        """End the run regaudit started as `status` (FINISHED, FAILED, KILLED); True when
        there was one to end."""
        if not self.started:
            return False
        self.started = False
        self.writer.end(status, self.timeout)
        self._run_id = self.writer.run_id
        return True
