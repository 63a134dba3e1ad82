"""What an audit writes to its run: tables, metrics and tags within the write budget
(else spooled), Keras' epoch logs as the history table and run metrics, the spool
replayed at train end."""

import time
import warnings

import keras
import pandas as pd

from regaudit.errors import RegauditWarning
from regaudit.schema import COLUMNS, MODEL, metric_key
from regaudit.measures.timing import EPOCH_SECONDS


#: replay rounds of `write_timeout` seconds at train end while the store takes writes
FINAL_REPLAY_ROUNDS = 5


class WritesTheAudit:
    """The audit's writes (a mixin of `regaudit.callbacks.audit.hooks.Audit`)."""

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
