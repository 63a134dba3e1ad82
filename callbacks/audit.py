"""The base of every regaudit callback: probe, schedule, one shared pass, MLflow, guards.

A subclass names its measure families; each family turns the probe pass's summaries into
rows of tidy tables and a few headline metrics. The base does everything else: chooses
the probe at `on_train_begin`, compiles one probe pass shared by all families, audits on
the schedule, writes each audit to MLflow before the hook returns (so a run killed at
epoch k keeps every audit up to k), and keeps the two invariants that matter most to a
user: the audit never changes the model, and a failing measure never stops training.
"""

import os
import time
import warnings

import keras
import pandas as pd

from regaudit import __version__
from regaudit.errors import RegauditError, RegauditWarning, UsageError, error_line
from regaudit.schema import (
    COLUMNS, MODEL, SCHEMA_VERSION, TABLE_ACTIVATIONS, TABLE_HISTORY, TAG_PREFIX, evenly_spaced, metric_key)
from regaudit.setup import regularization_tags
from regaudit.store import is_pending
from regaudit.timing import AUDIT_SECONDS, EPOCH_SECONDS

from regaudit.callbacks import fits
from regaudit.callbacks.arguments import ARGUMENTS_DOC, check_arguments
from regaudit.callbacks import keras_internals as internals
from regaudit.callbacks.context import AuditContext, Settings, measure_families
from regaudit.callbacks.lint_model import train_lint
from regaudit.callbacks.describe import layer_table, meta
from regaudit.callbacks.probe import NO_BATCH_AXIS, ProbePass
from regaudit.callbacks.probe_choice import ProbeUnavailable, check_probe, choose_probe, choose_train_probe
from regaudit.callbacks.schedule import as_schedule, planned_audits
from regaudit.callbacks.selection import MAX_METRIC_LAYERS, LayerSelection
from regaudit.callbacks.stochastic import kept_seed_state
from regaudit.callbacks.run_opener import OpensItsRun, RunOpener, in_background
from regaudit.callbacks.train_end_report import start_report
from regaudit.callbacks.write_warnings import WriteWarnings



#: replay rounds of `write_timeout` seconds at train end while the store takes writes
FINAL_REPLAY_ROUNDS = 5


class Audit(OpensItsRun, keras.callbacks.Callback):
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
    ):
        super().__init__()
        check_arguments(probe_size=probe_size, probe_batch_size=probe_batch_size,
                        mc_samples=mc_samples, ensemble_probe_size=ensemble_probe_size,
                        max_metric_layers=max_metric_layers, write_timeout=write_timeout)
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
            None if isinstance(gradient_ics, bool) else as_schedule(gradient_ics, "gradient_ics"))
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

    def _setup(self):
        self.probe_pass = self._probe_pass()
        self._metric_layers = set()
        if self.probe_pass is not None:
            self._check_selection()
            self._metric_layers = set(evenly_spaced([t.name for t in self.probe_pass.taps],
                                                    self.max_metric_layers))
            self._metric_layers.update(self.probe_pass.dropout_taps)
            # a group of sources (train-end ensembles of a model with many) is named by
            # its path's first component
            self._metric_layers.update(name.split("/")[0] for name in self.probe_pass.dropout_taps)
            self._warn_unmeasured()
        layers = layer_table(self.model, self.probe_pass, self._metric_layers)
        tags = {TAG_PREFIX + k: v for k, v in regularization_tags(layers).items()}
        probe = None if self.probe_pass is None else self.probe_pass.probe
        tags.update({
            TAG_PREFIX + "version": __version__,
            TAG_PREFIX + "schema_version": SCHEMA_VERSION,
            TAG_PREFIX + "probe_source": "none" if probe is None else probe.source,
            TAG_PREFIX + "probe_size": 0 if probe is None else probe.size,
            TAG_PREFIX + "step_unit": self.schedule.unit,
            # the train-end report is due: `regaudit sync` logs it if the store was away
            TAG_PREFIX + "report": "1" if self.report else "0",
        })
        lint, lint_tags = train_lint(layers, self.params, connected=self.probe_pass is not None)
        tags.update({TAG_PREFIX + k: v for k, v in lint_tags.items()})
        files = [("model.json", {"model": self.model.name, "layers": layers})]
        files += [("lint.json", lint)] if lint is not None else []
        files.append(("meta.json", meta(self)))
        self._measuring = self.probe_pass is not None
        self._active = True
        #: whether this fit's run opened in the background (`regaudit.callbacks.run_opener`)
        self.opened_in_background = in_background()
        if self.opened_in_background:  # the run opens as the model trains
            self._opener = RunOpener(lambda: self._open_run(tags, files, activate=False))
        else:
            self._take_run(self._open_run(tags, files, activate=True))

    def _probe_pass(self):
        """The compiled probe pass, or None (with one warning saying what is still
        logged) when the model cannot be called for inference or no probe can be drawn
        without changing training."""
        what = ("Keras' epoch logs (history) and the regularization tags are still logged; "
                "training goes on.")
        if not internals.defines_call(self.model):
            warnings.warn(
                f"regaudit: {type(self.model).__name__} defines no call() (it trains through "
                "train_step), so regaudit cannot run it on a probe: no activation, shift or "
                f"dropout-ensemble measure for this fit. {what} Give the model a call() "
                "method to have it measured.", RegauditWarning, stacklevel=3)
            return None
        try:
            probe = choose_probe(self.model, self.probe, self.probe_size, self.seed)
        except ProbeUnavailable as error:
            warnings.warn(f"{error} {what}", RegauditWarning, stacklevel=3)
            return None
        self._needs = set().union(*(family.needs for family in self.families))
        self.train_probe = None
        if "train_probe" in self._needs and probe.source == "val":
            self.train_probe = choose_train_probe(self.model, probe.size, self.seed + 1)
        return ProbePass(self.model, probe, self.probe_batch_size, self.seed,
                         train_probe=self.train_probe, select=self.layers,
                         planned_audits=planned_audits(self.schedule, self.params))

    def _check_selection(self):
        taps = self.probe_pass.taps
        if self.layers is not None and not taps:
            names = ", ".join(t.name for t in self.probe_pass.all_taps[:12])
            raise UsageError(
                f"regaudit: layers={self.layers.describe()} matched no layer of model "
                f"'{self.model.name}'; expected names, patterns or classes of its layers "
                f"({names}{', ...' if len(self.probe_pass.all_taps) > 12 else ''}).")

    def _warn_unmeasured(self):
        """Say once which layer outputs are not measured and why (`probe.UNMEASURED_REASONS`:
        an output whose first axis is not the batch, an integer output); model.json and the
        report's layer table say it per layer."""
        parts = []
        for reason, names in self.probe_pass.unmeasured.items():
            listed = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
            why = "their first axis is not the batch" if reason == NO_BATCH_AXIS else f"of type: {reason}"
            parts.append(f"{len(names)} because {why} ({listed})")
        if parts:
            count = sum(len(names) for names in self.probe_pass.unmeasured.values())
            warnings.warn(
                f"regaudit: {count} layer output(s) of model '{self.model.name}' are not measured: "
                f"{'; '.join(parts)}; every other layer call is.", RegauditWarning, stacklevel=3)

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
        (`regaudit.callbacks.fits`); True when there was one."""
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

    def _record_history(self, epoch, logs):
        """Keras' epoch logs (loss, accuracy, val_*, ...) and the epoch's wall time as
        rows of the history table, written with the next audit or at train end; and as
        run metrics (`_keras_metrics`) unless MLflow's Keras callback or autolog logs them
        in this fit."""
        scalars = {}
        for measure, value in (logs or {}).items():
            try:
                scalars[measure] = float(value)
            except (TypeError, ValueError):
                continue  # a non-scalar log entry
        seconds = time.perf_counter() - self._epoch_started
        for measure, value in {EPOCH_SECONDS: seconds, **scalars}.items():
            probe = "val" if measure.startswith("val_") else "train"
            self._history.append(dict(zip(COLUMNS, (
                self._run_id, epoch + 1, self._epoch_base_step, probe, MODEL, "Model",
                measure, value))))
        if self._log_keras:
            self._keras_logs.append(self._keras_metrics(epoch, scalars))

    def _keras_metrics(self, epoch, scalars):
        """(MLflow step, Keras' scalar epoch logs and the learning rate) as run metrics in
        the run regaudit writes to (its own, or the user's `mlflow.start_run()`), once:
        `loss`, `val_loss`, every compiled metric, `learning_rate`, at the step of the
        audit that follows this epoch (epoch + 1, or the global step), so they line up
        with the regaudit/* charts."""
        values = dict(scalars)
        optimizer = getattr(self.model, "optimizer", None)
        if "learning_rate" not in values and optimizer is not None:
            try:
                values["learning_rate"] = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
            except Exception:  # noqa: BLE001 - an exotic schedule: no learning-rate metric
                pass
        step = epoch + 1 if self.schedule.unit == "epoch" else self._epoch_base_step
        return step, values

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

    def _set_tags(self, tags):
        if not self._opened(wait=False):
            self._held.append(("tags", (tags,)))
            return
        self.writer.set_tags(tags)

    def _write(self, tables, metrics, epoch, step):
        if not self._opened(wait=False):  # the run is still opening: written once it is
            self._held.append(("write", (tables, metrics, epoch, step)))
            return
        self.writer.begin(self.write_timeout)  # replays the spool first, within the budget
        self.run_id = self.writer.run_id  # a pending run gets its MLflow id once created
        self.write_tables(tables)
        if metrics:
            self.write_metrics(metrics, epoch=epoch, step=step)
        for keras_step, values in self._keras_logs:
            self.writer.log_metrics(values, keras_step)
        self._keras_logs = []
        self._warn_spooled()

    def _warn_spooled(self):
        """Say once per fit what happened to writes MLflow did not take."""
        self._write_warnings.after_writes(self.writer)

    def _finish_writes(self):
        """At train end: replay the spool, again while a round's budget ran out with the
        store still taking writes (a server just back, slow under load, gets everything;
        one that does not answer costs one budget), at most FINAL_REPLAY_ROUNDS rounds;
        say what is left and how to send it."""
        replayed, left = self.writer.begin(self.write_timeout)
        for _ in range(FINAL_REPLAY_ROUNDS - 1):
            if not (replayed and left):
                break
            replayed, left = self.writer.begin(self.write_timeout)
        self._warn_spooled()
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

    def write_metrics(self, metrics, context=None, epoch=None, step=None):
        """Log {(layer, measure): value} as regaudit/<layer>/<measure> at the audit's step:
        model-wide measures always, per-layer ones for `max_metric_layers` evenly spaced
        layers and every Dropout layer (the rest is in the tables)."""
        if context is not None:
            epoch, step = context.epoch, context.step
        mlflow_step = self._mlflow_step(epoch, step)
        self.writer.log_metrics(
            {metric_key(layer, measure): value for (layer, measure), value in metrics.items()
             if layer in self._metric_layers or layer == MODEL or layer.startswith(MODEL + ":")},
            mlflow_step,
        )

    def _mlflow_step(self, epoch, step):
        """An audit's MLflow step: its epoch, or its optimizer step for step schedules."""
        return epoch if self.schedule.unit == "epoch" else step

    def write_tables(self, tables):
        """Store {table: rows} as the next audit part of each table (also outside a
        scheduled audit, as at train end)."""
        index = self._audit_index
        self._audit_index += 1
        for table, rows in tables.items():
            self.writer.log_table(table, index, pd.DataFrame(rows))

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
