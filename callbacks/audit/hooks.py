"""The base of every regaudit callback: probe, schedule, one shared pass, MLflow, guards.

A subclass names its measure families; each family turns the probe pass's summaries into
rows of tidy tables and a few headline metrics. The base does everything else: chooses
the probe at `on_train_begin`, compiles one probe pass shared by all families, audits on
the schedule, writes each audit to MLflow before the hook returns (so a run killed at
epoch k keeps every audit up to k), and keeps the two invariants that matter most to a
user: the audit never changes the model, and a failing measure never stops training.
"""

import inspect
import os
import time
import warnings

import keras

from regaudit.errors import RegauditError, RegauditWarning, error_line
from regaudit.schema import MODEL, TABLE_ACTIVATIONS, TABLE_HISTORY
from regaudit.tracking.store import is_pending
from regaudit.measures.timing import AUDIT_SECONDS

from regaudit.callbacks.audit import fits
from regaudit.callbacks.audit.arguments import ARGUMENTS_DOC, check_arguments, check_known
from regaudit.callbacks.audit.setup import SetsUpTheAudit
from regaudit.callbacks.audit.writes import WritesTheAudit
from regaudit.callbacks.backends import keras_internals as internals
from regaudit.callbacks.audit.context import AuditContext, Settings, measure_families
from regaudit.callbacks.probe.choice import check_probe
from regaudit.callbacks.audit.schedule import as_schedule
from regaudit.callbacks.audit.selection import MAX_METRIC_LAYERS, LayerSelection
from regaudit.callbacks.probe.stochastic import kept_seed_state
from regaudit.callbacks.audit.run_opener import OpensItsRun
from regaudit.callbacks.audit.train_end_report import start_report
from regaudit.callbacks.audit.write_warnings import WriteWarnings


class Audit(SetsUpTheAudit, WritesTheAudit, OpensItsRun, keras.callbacks.Callback):
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
        self._run_id = None
        self._opener = None  # `RunOpener`: the fit's run opening in the background
        self._held = []  # writes made before it was open: (tables, metrics, epoch, step)
        self.probe_pass = None
        self._active = self._started_run = False
        self._log_keras = True  # Keras' epoch logs as run metrics (unless MLflow logs them)

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
        self._log_keras = not fits.others_log_keras_metrics(internals.fit_callbacks(self))
        self._safely("setup", self._setup)

    def on_train_batch_begin(self, batch, logs=None):
        # begin, not end: overriding *_batch_end would stop Keras' async dispatch
        if not self._active or not self._measuring or self.schedule.unit != "step":
            return
        step = self._epoch_base_step + batch
        # a bucket crossed, not step % N == 0: with steps_per_execution > 1 Keras calls
        # this hook only every few steps
        if step // self.schedule.steps > self._last_step_bucket:
            self._last_step_bucket = step // self.schedule.steps
            self._audit(epoch=self._epoch, step=step)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        if self._before_first_step:
            self._start(epoch)
        self._epoch_started = time.perf_counter()

    def _start(self, epoch):
        """At the first epoch of the fit, where the model really is: `fit(initial_epoch=)`
        and `BackupAndRestore` (whose `on_train_begin` restores the weights, the optimizer's
        iterations and the epoch, before or after this callback's) are known only now. The
        audit before the first step is labelled with that epoch and optimizer step."""
        self._before_first_step = False
        if not self._active:
            return
        self._epoch_base_step = self._global_step()
        self._last_step_bucket = self._epoch_base_step // (getattr(self.schedule, "steps", None) or 1)
        if self._measuring and self.schedule.at_start:
            step = self._epoch_base_step
            # a resumed fit in a run an earlier fit audited up to here: that audit is
            # measured again (the next audit's drift is taken against it), not written
            repeat = self._mlflow_step(epoch, step) in self._steps_written
            self._audit(epoch=epoch, step=step, write=not repeat)

    def on_epoch_end(self, epoch, logs=None):
        if not self._active or not self._opened():
            return
        self._epoch_base_step = self._global_step()
        self._record_history(epoch, logs)
        if self._measuring and self.schedule.unit == "epoch" and self.schedule(epoch + 1):
            self._audit(epoch=epoch + 1, step=self._epoch_base_step)
        else:  # no audit now: the epoch's logs go out on their own
            tables = {TABLE_HISTORY: self._history} if not self._measuring else {}
            self._safely("MLflow write", self._write, tables, {}, epoch + 1, self._epoch_base_step)
            if not self._measuring:
                self._history = []

    def on_train_end(self, logs=None):
        fits.release(self)
        if self._active and self._opened():
            self.writer.begin(self.write_timeout, final=True)
            if self._history:
                self._safely("MLflow write", self.write_tables, {TABLE_HISTORY: self._history})
                self._history = []
            context = self._last_context
            for family in self.families:
                if hasattr(family, "finish") and context is not None:
                    with kept_seed_state(self.model):
                        done = self._guarded(MODEL, f"{family.name} at train end", family.finish, context)
                    tables, metrics = done if done is not None else ({}, {})
                    if tables:
                        self._safely("MLflow write", self.write_tables, tables)
                    if metrics:
                        self._safely("MLflow write", self.write_metrics, metrics, context)
            self._safely("MLflow write", self._finish_writes)
        if self._started_run:
            self._started_run = False
            self._safely("end of run", self.writer.end, "FINISHED", self.write_timeout)
        if self._active:
            self.run_id = self.writer.run_id
        if self.report and self.run_id is not None and self.audits:
            if is_pending(self.run_id) or self.writer.spool_pending():
                # a report now would read a run without its spooled audits: it stays due
                # (tag regaudit.report) and `regaudit sync` logs it once they are sent
                self._write_warnings.report_waits(self.run_id)
            else:
                self.report_thread = start_report(self.run_id)

    # -- the audit -------------------------------------------------------------------

    def _reset(self):
        self._active = False
        self._opener, self._held = None, []
        #: False when the model runs but no probe pass can (no probe, no `call`)
        self._measuring = False
        self._off = set()
        self._started_run = False
        self._audit_index = 0
        self._epoch = 0
        self._epoch_base_step = 0
        self._last_step_bucket = 0
        self._before_first_step = True
        #: MLflow steps an earlier fit already audited in this run (a resumed fit)
        self._steps_written = set()
        self.families = [family_type() for family_type in self.family_types]
        self.audits = []
        self._history = []  # Keras' epoch logs not yet written
        self._keras_logs = []  # (MLflow step, {key: value}) not yet written as run metrics
        self._last_context = None  # the last audit's, for the families' finish
        self.train_probe = None
        self._write_warnings = WriteWarnings()
        self._epoch_started = time.perf_counter()

    def _global_step(self):
        optimizer = getattr(self.model, "optimizer", None)
        return int(optimizer.iterations.numpy()) if optimizer is not None else 0

    def _audit(self, epoch, step, write=True):
        try:
            with kept_seed_state(self.model):  # a layer random in inference draws
                self._audit_once(epoch, step, write)
        except KeyboardInterrupt:
            # Ctrl-C during an audit: its own state restores itself on the way out (every
            # model change it makes is undone in `finally` blocks), what was written stays,
            # what was spooled stays consistent (each entry is one whole line)
            fits.release(self)
            self.end_unended("KILLED")
            raise

    def end_unended(self, status):
        """End, as `status`, the run regaudit started for a fit that did not reach its end
        (`regaudit.callbacks.audit.fits`); True when there was one."""
        if self._opener is not None:
            self._opened()
        self._active = False
        if not self._started_run:
            return False
        self._started_run = False
        try:  # called from a new fit's start, an interrupt and the exit hook: never raises
            self.writer.end(status, self.write_timeout)
        except Exception as error:  # noqa: BLE001 - said in one line; training goes on
            warnings.warn(f"regaudit: run {self.run_id} could not be ended as {status} "
                          f"({type(error).__name__}: {error_line(error)}); end it in MLflow's UI.",
                          RegauditWarning, stacklevel=2)
        return True

    def _audit_once(self, epoch, step, write=True):
        if not write:
            # measured for the families' state (the drift baseline), not written
            passes = self._safely("probe pass", self._run_passes)
            if passes is not None:
                context = self._context(passes, epoch, step)
                for family in self.families:
                    self._guarded(MODEL, family.name, family.measure, context)
                self._last_context = context
            return
        started = time.perf_counter()
        passes = self._safely("probe pass", self._run_passes)
        if passes is None:
            return
        context = self._context(passes, epoch, step)
        self._last_context = context
        tables, metrics = {}, {}
        for measured in measure_families(self.families, context, self._guarded):
            family_tables, family_metrics = measured if measured is not None else ({}, {})
            for table, rows in family_tables.items():
                tables.setdefault(table, []).extend(rows)
            metrics.update(family_metrics)
        seconds = time.perf_counter() - started
        # the audit's own cost, in the table and as regaudit/model/audit_seconds
        tables.setdefault(TABLE_ACTIVATIONS, []).append(
            context.row(MODEL, "Model", AUDIT_SECONDS, seconds))
        metrics[(MODEL, AUDIT_SECONDS)] = seconds
        if self._history:
            tables[TABLE_HISTORY], self._history = self._history, []
        self._safely("MLflow write", self._write, tables, metrics, epoch, step)
        self.audits.append({"epoch": epoch, "step": step, "seconds": seconds})

    def gradient_ics_due(self, epoch, step):
        """Whether the gradient ICS runs at this audit (`gradient_ics=` argument)."""
        schedule = self._ics_schedule
        if schedule is None:
            return self.gradient_ics is True
        count = epoch if schedule.unit == "epoch" else step
        return schedule(count) or (count == 0 and schedule.at_start)

    def _context(self, passes, epoch, step):
        """What the families get of this audit (`context.AuditContext`)."""
        settings = Settings(seed=self.seed, mc_samples=self.mc_samples,
                            ensemble_probe_size=self.ensemble_probe_size,
                            probe_batch_size=self.probe_batch_size)
        return AuditContext(
            model=self.model, probe_pass=self.probe_pass, train_probe=self.train_probe,
            settings=settings, passes=passes, epoch=epoch, step=step, run_id=self._run_id,
            guard=self._guarded, switched_off=self._off, set_tags=self._set_tags,
            gradient_ics_due=self.gradient_ics_due(epoch, step))

    def _run_passes(self):
        """The probe pass: the probe, the training probe and the twin, as the families
        need them, in the same calls."""
        summaries, batchnorm, twin, train = self.probe_pass.run(twin="twin" in self._needs)
        return {"main": (summaries, batchnorm, twin), "train": (train,)}

    # -- guards ----------------------------------------------------------------------

    def _guarded(self, layer, measure, function, *args):
        if (layer, measure) in self._off:
            return None
        try:
            return function(*args)
        except Exception as error:
            if self.strict:
                raise
            self._off.add((layer, measure))
            warnings.warn(
                f"regaudit: measure '{measure}' failed on layer '{layer}' "
                f"({type(error).__name__}: {error}); it is switched off for this layer "
                "and training goes on.",
                RegauditWarning,
                stacklevel=2,
            )
            return None

    def _safely(self, what, function, *args):
        """Run a whole step of the audit; on failure warn once and switch the audit off."""
        try:
            return function(*args)
        except Exception as error:
            if self.strict:
                raise
            self._active = False
            detail = str(error) if isinstance(error, RegauditError) else f"{type(error).__name__}: {error}"
            warnings.warn(
                f"regaudit: {what} failed ({detail}); the audit is switched off for this "
                "fit and training goes on.",
                RegauditWarning,
                stacklevel=2,
            )
            return None


#: the arguments every regaudit callback accepts, in their order (named by an unknown
#: keyword's error)
ACCEPTED = tuple(name for name, parameter in inspect.signature(Audit.__init__).parameters.items()
                 if name != "self" and parameter.kind is not parameter.VAR_KEYWORD)
