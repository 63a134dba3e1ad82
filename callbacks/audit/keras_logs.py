"""Keras' epoch logs as regaudit keeps them: rows of the history table, written with the
next audit or at train end, and run metrics in the run regaudit writes to (unless
MLflow's Keras callback or autolog logs them in this fit)."""

import time

import keras

from regaudit.schema import COLUMNS, MODEL
from regaudit.measures.timing import EPOCH_SECONDS


class KerasLogs:
    """Keras' epoch logs not yet written.

    Args:
        as_metrics: whether they also go to the run as metrics (`loss`, `val_loss`, every
            compiled metric, `learning_rate`).
    """

    def __init__(self, as_metrics=True):
        self.as_metrics = as_metrics
        #: rows of the history table not yet written
        self.rows = []
        #: (MLflow step, {key: value}) not yet written as run metrics
        self.metrics = []
        self.epoch_started = time.perf_counter()

    def start_epoch(self):
        self.epoch_started = time.perf_counter()

    def record(self, epoch, logs, run_id, base_step, mlflow_step, optimizer):
        """Keras' epoch logs (loss, accuracy, val_*, ...) and the epoch's wall time as rows
        of the history table, and as run metrics at `mlflow_step` (the step of the audit
        that follows this epoch, so they line up with the regaudit/* charts)."""
        scalars = {}
        for measure, value in (logs or {}).items():
            try:
                scalars[measure] = float(value)
            except (TypeError, ValueError):
                continue  # a non-scalar log entry
        seconds = time.perf_counter() - self.epoch_started
        for measure, value in {EPOCH_SECONDS: seconds, **scalars}.items():
            probe = "val" if measure.startswith("val_") else "train"
            self.rows.append(dict(zip(COLUMNS, (
                run_id, epoch + 1, base_step, probe, MODEL, "Model", measure, value))))
        if self.as_metrics:
            self.metrics.append((mlflow_step, _with_learning_rate(scalars, optimizer)))

    def take_rows(self):
        rows, self.rows = self.rows, []
        return rows

    def take_metrics(self):
        metrics, self.metrics = self.metrics, []
        return metrics


def _with_learning_rate(scalars, optimizer):
    """The scalar logs and the optimizer's learning rate, when the logs lack it."""
    values = dict(scalars)
    if "learning_rate" not in values and optimizer is not None:
        try:
            values["learning_rate"] = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
        except Exception:  # noqa: BLE001 - an exotic schedule: no learning-rate metric
            pass
    return values
