"""The MLflow side of an audit: join or start a run, write metrics, tags and tables."""

import json
import os
import tempfile
import time

from regaudit.schema import ARTIFACT_DIR, part_file_name, table_part_path

#: MLflow accepts at most 1,000 metrics in one log_batch call.
MAX_BATCH = 1000


def join_or_start_run(run_name=None):
    """Return (run_id, started): the active MLflow run (also the one
    `mlflow.keras.autolog()` opens inside `fit`), else a new one this process starts."""
    import mlflow

    active = mlflow.active_run()
    if active is not None:
        return active.info.run_id, False
    run = mlflow.start_run(run_name=run_name)
    return run.info.run_id, True


def end_run(run_id, status="FINISHED"):
    """End the run this process started, if it is still the active one."""
    import mlflow

    active = mlflow.active_run()
    if active is not None and active.info.run_id == run_id:
        mlflow.end_run(status=status)


class RunWriter:
    """Writes one run's audit data with an explicit run id: metrics in `log_batch`
    calls of at most 1,000, tables as one Parquet part per audit, JSON artifacts."""

    def __init__(self, run_id, client=None):
        from mlflow.tracking import MlflowClient

        self.run_id = run_id
        self.client = client or MlflowClient()

    def log_metrics(self, metrics, step):
        """Log {key: value} at `step` (the epoch, or the global batch for step schedules)."""
        from mlflow.entities import Metric

        timestamp = int(time.time() * 1000)
        entries = [
            Metric(key, float(value), timestamp, int(step))
            for key, value in metrics.items()
            if value is not None
        ]
        for start in range(0, len(entries), MAX_BATCH):
            self.client.log_batch(self.run_id, metrics=entries[start : start + MAX_BATCH])
        return len(entries)

    def set_tags(self, tags):
        from mlflow.entities import RunTag

        entries = [RunTag(key, str(value)) for key, value in tags.items()]
        for start in range(0, len(entries), MAX_BATCH):
            self.client.log_batch(self.run_id, tags=entries[start : start + MAX_BATCH])

    def next_part_index(self):
        """The next free audit number in this run, so a second `fit` joining the same run
        adds parts instead of overwriting the first fit's."""
        from regaudit.schema import TABLE_ACTIVATIONS

        listed = self.client.list_artifacts(self.run_id, table_part_path(TABLE_ACTIVATIONS))
        numbers = [
            int(item.path.rsplit("audit-", 1)[1].split(".")[0])
            for item in listed
            if "audit-" in item.path
        ]
        return max(numbers, default=-1) + 1

    def _log_file(self, name, artifact_path, write):
        """Write a file with `write(path)` in a temporary folder and log it."""
        with tempfile.TemporaryDirectory(prefix="regaudit-") as folder:
            path = os.path.join(folder, name)
            write(path)
            self.client.log_artifact(self.run_id, path, artifact_path=artifact_path)

    def log_table(self, table, audit_index, frame):
        """Store one audit's rows of `table` as regaudit/<table>/audit-NNNNNN.parquet."""
        self._log_file(part_file_name(audit_index), table_part_path(table),
                       lambda path: frame.to_parquet(path, index=False))

    def log_png(self, data, name):
        """Store PNG bytes as regaudit/plots/<name>, which the MLflow UI shows."""
        from regaudit.schema import PLOTS_DIR

        def write(path):
            with open(path, "wb") as handle:
                handle.write(data)

        self._log_file(name, PLOTS_DIR, write)

    def log_json(self, name, obj):
        """Store `obj` as regaudit/<name> (for example meta.json, model.json)."""

        def write(path):
            with open(path, "w", encoding="utf-8") as handle:
                json.dump(obj, handle, indent=2, sort_keys=True, default=str)

        self._log_file(name, ARTIFACT_DIR, write)


def download_tables(run_id, client=None):
    """{table name: DataFrame} of every Parquet table of a run, plus `meta` and `model`
    (the JSON artifacts as dicts), from one download of the run's `regaudit/` folder."""
    import pandas as pd
    from mlflow.tracking import MlflowClient

    client = client or MlflowClient()
    out = {}
    with tempfile.TemporaryDirectory(prefix="regaudit-") as folder:
        root = client.download_artifacts(run_id, ARTIFACT_DIR, folder)
        for entry in sorted(os.listdir(root)):
            path = os.path.join(root, entry)
            if os.path.isdir(path):
                parts = sorted(p for p in os.listdir(path) if p.endswith(".parquet"))
                frames = [pd.read_parquet(os.path.join(path, p)) for p in parts]
                out[entry] = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
            elif entry.endswith(".json"):
                with open(path, encoding="utf-8") as handle:
                    out[entry[: -len(".json")]] = json.load(handle)
    return out
