"""The base of every regaudit callback: probe, schedule, one shared pass, MLflow, guards.

A subclass names its measure families; each family turns the probe pass's summaries into
rows of tidy tables and a few headline metrics. The base does everything else: chooses
the probe at `on_train_begin`, compiles one probe pass shared by all families, audits on
the schedule, writes each audit to MLflow before the hook returns (so a run killed at
epoch k keeps every audit up to k), and keeps the two invariants that matter most to a
user: the audit never changes the model, and a failing measure never stops training.

`Audit` is the Keras hooks and the callback's arguments; it composes the parts of a fit:
`Guards` (invariant 2), `AuditRun` (the MLflow run), `Measurement` (the families on the
probe pass), `KerasLogs` (Keras' epoch logs) and `Clock` (where the schedule is).
"""

import inspect
import os
import warnings

import keras

from regaudit.errors import RegauditWarning, error_line
from regaudit.schema import TABLE_HISTORY
from regaudit.tracking.run_opening import is_pending

from regaudit.callbacks.audit import fits
from regaudit.callbacks.audit.arguments import ARGUMENTS_DOC, check_arguments, check_known
from regaudit.callbacks.audit.clock import Clock
from regaudit.callbacks.audit.context import Settings
from regaudit.callbacks.audit.guards import Guards
from regaudit.callbacks.audit.keras_logs import KerasLogs
from regaudit.callbacks.audit.measurement import Measurement
from regaudit.callbacks.audit.run import AuditRun
from regaudit.callbacks.audit.schedule import as_schedule
from regaudit.callbacks.audit.selection import MAX_METRIC_LAYERS, LayerSelection
from regaudit.callbacks.audit.setup import metric_layers, probe_pass_for, run_opening
from regaudit.callbacks.audit.train_end_report import start_report
from regaudit.callbacks.backends import keras_internals as internals
from regaudit.callbacks.probe.choice import check_probe
from regaudit.callbacks.probe.stochastic import kept_seed_state


class Audit(keras.callbacks.Callback):
    """Base of the regaudit callbacks.
    """ + ARGUMENTS_DOC

    #: the measure families this callback computes; one instance each per fit
    family_types = ()

    def __init__(
        self,
        probe=None,
        probe_size=512,
        schedule="epoch",
        seed=0,
        strict=False,
        probe_batch_size=128,
        gradient_ics=False,
        mc_samples=8,
        ensemble_probe_size=128,
        write_timeout=10.0,
        report=None,
        layers=None,
        max_metric_layers=MAX_METRIC_LAYERS,
        **unknown,
    ):
        super().__init__()
        check_known(type(self).__name__, unknown, ACCEPTED)
        check_arguments(probe_size=probe_size, probe_batch_size=probe_batch_size,
                        mc_samples=mc_samples, ensemble_probe_size=ensemble_probe_size,
                        max_metric_layers=max_metric_layers, write_timeout=write_timeout,
                        seed=seed, strict=strict, report=report)
        self.layers = None if layers is None else LayerSelection(layers)
        self.max_metric_layers = max_metric_layers
        if probe is not None:
            check_probe(probe)
        self.probe = probe
        self.probe_size = probe_size
        self.schedule = as_schedule(schedule, "schedule")
        self.seed = seed
        self.strict = strict
        self.probe_batch_size = probe_batch_size
        self.gradient_ics = gradient_ics
        self.mc_samples = mc_samples
        self.ensemble_probe_size = ensemble_probe_size
        self.write_timeout = float(write_timeout)
        self.report = (os.environ.get("REGAUDIT_REPORT", "1") != "0") if report is None else bool(report)
        self.report_thread = None
        self._ics_schedule = (
            None if isinstance(gradient_ics, bool) else as_schedule(gradient_ics, "gradient_ics", also="True, False, "))
        #: the parts of a fit, made anew at each train begin (`_reset`): what the audit
        #: measures, its run, its guards, Keras' logs, the schedule's position
        self._reset()

    # -- what users and tests read -------------------------------------------------------

    @property
    def run_id(self):
        """The MLflow run this fit's audits go to (a run still opening in the background
        is waited for); `pending-<hex>` while the tracking store could not create it."""
        return None if self.run is None else self.run.run_id

    @property
    def probe_pass(self):
        """The fit's compiled `ProbePass`, None before train begin or without a probe."""
        return None if self.measurement is None else self.measurement.probe_pass

    @property
    def families(self):
        return [] if self.measurement is None else self.measurement.families

    @property
    def audits(self):
        """One {"epoch", "step", "seconds"} per audit written in the last fit."""
        return [] if self.measurement is None else self.measurement.audits

    # -- hooks -----------------------------------------------------------------------

    def on_train_begin(self, logs=None):
        chief = fits.is_chief(self.model)
        # first: a run this callback started for an earlier fit that never ended is ended
        other = fits.claim(self) if chief else None
        self._reset()
        if not chief:
            return  # one run per fit: the chief audits, the other workers only train
        if other is not None:
            warnings.warn(
                f"regaudit: {type(other).__name__} already audits this fit, so this "
                f"{type(self).__name__} stays off (two would write the same run twice); pass "
                "one regaudit callback per fit (RegAudit() holds every family).",
                RegauditWarning, stacklevel=2)
            return
        # read here, in the hook Keras' CallbackList calls: who else logs Keras' metrics
        self.logs.as_metrics = not fits.others_log_keras_metrics(internals.fit_callbacks(self))
        self.guards.step("setup", self._setup)

    def _setup(self):
        probe_pass = probe_pass_for(self, self.measurement.needs)
        self.measurement.probe_pass = probe_pass
        logged = metric_layers(probe_pass, self.max_metric_layers)
        tags, files = run_opening(self, probe_pass, logged)
        self.run = AuditRun(self.write_timeout, self.schedule.unit, self.guards, logged)
        self.guards.on = True
        self.run.open(tags, files)

    def on_train_batch_begin(self, batch, logs=None):
        # begin, not end: overriding *_batch_end would stop Keras' async dispatch
        if not self._measuring or self.schedule.unit != "step":
            return
        step = self.clock.crossed(batch)
        if step is not None:
            self._audit(epoch=self.clock.epoch, step=step)

    def on_epoch_begin(self, epoch, logs=None):
        self.clock.epoch = epoch
        if self.clock.before_first_step:
            self._start(epoch)
        self.logs.start_epoch()

    def _start(self, epoch):
        """At the first epoch of the fit, where the model really is: `fit(initial_epoch=)`
        and `BackupAndRestore` (whose `on_train_begin` restores the weights, the optimizer's
        iterations and the epoch, before or after this callback's) are known only now. The
        audit before the first step is labelled with that epoch and optimizer step."""
        self.clock.start(self._global_step())
        if self._measuring and self.schedule.at_start:
            step = self.clock.base_step
            # a resumed fit in a run an earlier fit audited up to here: that audit is
            # measured again (the next audit's drift is taken against it), not written
            repeat = self.run.mlflow_step(epoch, step) in self.run.steps_written
            self._audit(epoch=epoch, step=step, write=not repeat)

    def on_epoch_end(self, epoch, logs=None):
        if not self.guards.on or not self.run.opened():
            return
        self.clock.base_step = self._global_step()
        mlflow_step = self.run.mlflow_step(epoch + 1, self.clock.base_step)
        self.logs.record(epoch, logs, self.run.run_id, self.clock.base_step, mlflow_step,
                         getattr(self.model, "optimizer", None))
        if self._measuring and self.schedule.unit == "epoch" and self.schedule(epoch + 1):
            self._audit(epoch=epoch + 1, step=self.clock.base_step)
        elif not self._measuring:  # no audit: the epoch's logs go out on their own
            self._write({TABLE_HISTORY: self.logs.take_rows()}, {}, epoch + 1, self.clock.base_step)
        else:  # no audit now: the run metrics go out, the rows with the next audit
            self._write({}, {}, epoch + 1, self.clock.base_step)

    def on_train_end(self, logs=None):
        fits.release(self)
        run, guards = self.run, self.guards
        if guards.on and run.opened():
            run.writer.begin(run.timeout, final=True)
            rows = self.logs.take_rows()
            if rows:
                guards.step("MLflow write", run.write_tables, {TABLE_HISTORY: rows})
            for tables, metrics, context in self.measurement.finish(self.model):
                if tables:
                    guards.step("MLflow write", run.write_tables, tables)
                if metrics:
                    guards.step("MLflow write", run.write_metrics, metrics, context.epoch, context.step)
            guards.step("MLflow write", run.finish_writes)
        if run is not None and run.started:
            guards.step("end of run", run.end, "FINISHED")
        if self.report and self.run_id is not None and self.audits:
            if is_pending(self.run_id) or run.writer.spool_pending():
                # a report now would read a run without its spooled audits: it stays due
                # (tag regaudit.report) and `regaudit sync` logs it once they are sent
                run.warnings.report_waits(self.run_id)
            else:
                self.report_thread = start_report(self.run_id)

    # -- the audit -------------------------------------------------------------------

    @property
    def _measuring(self):
        """Whether this fit's audits run: the audit is on and a probe pass could be built."""
        return self.guards.on and self.probe_pass is not None

    def _reset(self):
        """The parts of a fit, fresh: its families, guards, measurement, logs and clock; no run."""
        families = [family_type() for family_type in self.family_types]
        settings = Settings(seed=self.seed, mc_samples=self.mc_samples,
                            ensemble_probe_size=self.ensemble_probe_size,
                            probe_batch_size=self.probe_batch_size)
        self.guards = Guards(self.strict)
        self.measurement = Measurement(families, settings, self.guards)
        self.run = None
        self.logs = KerasLogs()
        self.clock = Clock(getattr(self.schedule, "steps", None))

    def _global_step(self):
        optimizer = getattr(self.model, "optimizer", None)
        return int(optimizer.iterations.numpy()) if optimizer is not None else 0

    def _audit(self, epoch, step, write=True):
        try:
            with kept_seed_state(self.model):  # a layer random in inference draws
                measured = self.measurement.audit(
                    self.model, epoch, step, self.run.known_id,
                    self.run.set_tags, self.gradient_ics_due(epoch, step), write)
            if measured is not None:
                tables, metrics = measured
                rows = self.logs.take_rows()
                if rows:
                    tables[TABLE_HISTORY] = rows
                self._write(tables, metrics, epoch, step)
        except KeyboardInterrupt:
            # Ctrl-C during an audit: its own state restores itself on the way out (every
            # model change it makes is undone in `finally` blocks), what was written stays,
            # what was spooled stays consistent (each entry is one whole line)
            fits.release(self)
            self.end_unended("KILLED")
            raise

    def _write(self, tables, metrics, epoch, step):
        self.guards.step("MLflow write", self.run.write, tables, metrics, epoch, step,
                         self.logs.take_metrics())

    def end_unended(self, status):
        """End, as `status`, the run regaudit started for a fit that did not reach its end
        (`regaudit.callbacks.audit.fits`); True when there was one."""
        run = self.run
        if run is not None:
            run.opened()
        self.guards.on = False
        if run is None:
            return False
        try:  # called from a new fit's start, an interrupt and the exit hook: never raises
            return run.end(status)
        except Exception as error:  # noqa: BLE001 - said in one line; training goes on
            warnings.warn(f"regaudit: run {run.run_id} could not be ended as {status} "
                          f"({type(error).__name__}: {error_line(error)}); end it in MLflow's UI.",
                          RegauditWarning, stacklevel=2)
            return True

    def gradient_ics_due(self, epoch, step):
        """Whether the gradient ICS runs at this audit (`gradient_ics=` argument)."""
        schedule = self._ics_schedule
        if schedule is None:
            return self.gradient_ics is True
        count = epoch if schedule.unit == "epoch" else step
        return schedule(count) or (count == 0 and schedule.at_start)


#: the arguments every regaudit callback accepts, in their order (named by an unknown
#: keyword's error)
ACCEPTED = tuple(name for name, parameter in inspect.signature(Audit.__init__).parameters.items()
                 if name != "self" and parameter.kind is not parameter.VAR_KEYWORD)
