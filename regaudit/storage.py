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


class Unreachable(Exception):
    """An MLflow write that failed or did not finish within the audit's time budget."""


class RunWriter:
    """Writes one run's audit data with an explicit run id: metrics in `log_batch`
    calls of at most 1,000, tables as one Parquet part per audit, JSON and PNG artifacts.

    With a time budget (`begin(seconds)`, called at every audit), each MLflow call runs
    in a daemon thread and the audit waits for it at most until the budget is spent; a
    write that fails or times out, and every write after it in that audit, goes to the
    run's local spool (`regaudit.spool`) and is replayed at the next audit, at train end,
    or by `regaudit sync`. Without a budget (reports, `regaudit sync`) calls run inline.
    """

    def __init__(self, run_id, client=None):
        from mlflow.tracking import MlflowClient

        from regaudit.spool import Spool

        self.run_id = run_id
        self.client = client or MlflowClient()
        self.spool = Spool(run_id)
        self._deadline = None
        self._offline = False
        self.spooled = 0  # writes sent to the spool by this writer
        self.last_error = None
        self._has_pending = None  # whether the spool holds entries (read once, then kept)

    # -- the bounded path ---------------------------------------------------------------

    def begin(self, seconds):
        """Start an audit's writes with a budget of `seconds` (None: unbounded), after
        replaying what the spool holds."""
        self._deadline = None if seconds is None else time.monotonic() + seconds
        self._offline = False
        return self.replay()

    def _call(self, function, *args):
        if self._deadline is None:
            return function(*args)
        remaining = self._deadline - time.monotonic()
        if self._offline or remaining <= 0:
            raise Unreachable("the audit's MLflow time budget is spent")
        import threading

        outcome = {}

        def target():
            try:
                outcome["value"] = function(*args)
            except BaseException as error:  # noqa: BLE001 - handed to the caller
                outcome["error"] = error

        worker = threading.Thread(target=target, name="regaudit-mlflow-write", daemon=True)
        worker.start()
        worker.join(remaining)
        if worker.is_alive():
            self._offline = True
            raise Unreachable(f"no answer within {remaining:.1f} s")
        if "error" in outcome:
            self._offline = True
            error = outcome["error"]
            raise Unreachable(f"{type(error).__name__}: {str(error).splitlines()[0][:200] if str(error) else ''}")
        return outcome.get("value")

    def _write(self, kind, payload, file=None):
        """Send one write to MLflow within the budget, else to the spool."""
        if not self.spool_pending():
            try:
                return self._call(self._apply, {"kind": kind, "payload": payload, "file": file})
            except Unreachable as error:
                self.last_error = str(error)
        self.spool.add(kind, payload, file)
        self.spooled += 1
        self._has_pending = True
        return None

    def spool_pending(self):
        if self._has_pending is None:
            self._has_pending = bool(self.spool.pending())
        return self._has_pending

    def replay(self):
        """Replay the spool in order within the budget: (replayed, left)."""
        if not self.spool_pending():
            return 0, 0

        def stop():
            return self._offline or (self._deadline is not None and time.monotonic() >= self._deadline)

        replayed, left = self.spool.replay(lambda entry: self._call(self._apply, entry), stop)
        self._has_pending = left > 0
        return replayed, left

    def _apply(self, entry):
        from mlflow.entities import Metric, RunTag

        kind, payload = entry["kind"], entry["payload"]
        if kind == "metrics":
            self.client.log_batch(self.run_id, metrics=[Metric(k, v, t, s) for k, v, t, s in payload])
        elif kind == "tags":
            self.client.log_batch(self.run_id, tags=[RunTag(k, v) for k, v in payload.items()])
        elif kind == "artifact":
            self.client.log_artifact(self.run_id, entry["file"], artifact_path=payload["artifact_path"])
        else:
            raise ValueError(f"unknown spool entry kind {kind!r}")

    # -- writes -------------------------------------------------------------------------

    def log_metrics(self, metrics, step):
        """Log {key: value} at `step` (the epoch, or the global batch for step schedules)."""
        timestamp = int(time.time() * 1000)
        entries = [[key, float(value), timestamp, int(step)]
                   for key, value in metrics.items() if value is not None]
        for start in range(0, len(entries), MAX_BATCH):
            self._write("metrics", entries[start : start + MAX_BATCH])
        return len(entries)

    def set_tags(self, tags):
        items = [(key, str(value)) for key, value in tags.items()]
        for start in range(0, len(items), MAX_BATCH):
            self._write("tags", dict(items[start : start + MAX_BATCH]))

    def next_part_index(self):
        """The next free audit number in this run, so a second `fit` joining the same run
        adds parts instead of overwriting the first fit's (parts still in the spool
        count too)."""
        from regaudit.schema import TABLE_ACTIVATIONS

        listed = self._call(self.client.list_artifacts, self.run_id, table_part_path(TABLE_ACTIVATIONS))
        names = [item.path for item in listed]
        names += [e["file"] for e in self.spool.pending() if "file" in e]
        numbers = [int(name.rsplit("audit-", 1)[1].split(".")[0])
                   for name in names if "audit-" in name]
        return max(numbers, default=-1) + 1

    def _log_file(self, name, artifact_path, write):
        """Write a file with `write(path)` in a temporary folder and log it."""
        with tempfile.TemporaryDirectory(prefix="regaudit-") as folder:
            path = os.path.join(folder, name)
            write(path)
            self._write("artifact", {"artifact_path": artifact_path}, path)

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


def _corrupt(run_id, name, error):
    from regaudit.errors import RegauditError

    return RegauditError(
        f"regaudit: the artifact regaudit/{name} of run {run_id!r} is damaged "
        f"({type(error).__name__}: {str(error).splitlines()[0][:120] if str(error) else ''}); "
        "delete it in the MLflow UI or rerun the training to read this run.")


def _read_part(run_id, name, path):
    import pandas as pd

    try:
        return pd.read_parquet(path)
    except Exception as error:  # noqa: BLE001 - pyarrow raises several kinds
        raise _corrupt(run_id, name, error) from None


_PROGRESS_BAR = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"


def _quiet_download(client, run_id, path, folder):
    """`client.download_artifacts` without MLflow's tqdm progress bar (shown whenever tqdm
    is installed), which would break the CLI's one-line errors and litter a training
    script's output from the train-end report; a user's own setting of
    MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR wins."""
    if _PROGRESS_BAR in os.environ:
        return client.download_artifacts(run_id, path, folder)
    os.environ[_PROGRESS_BAR] = "false"
    try:
        return client.download_artifacts(run_id, path, folder)
    finally:
        os.environ.pop(_PROGRESS_BAR, None)


def download_tables(run_id, client=None):
    """{table name: DataFrame} of every Parquet table of a run, plus `meta` and `model`
    (the JSON artifacts as dicts), from one download of the run's `regaudit/` folder."""
    import pandas as pd
    from mlflow.tracking import MlflowClient

    client = client or MlflowClient()
    out = {}
    with tempfile.TemporaryDirectory(prefix="regaudit-") as folder:
        root = _quiet_download(client, run_id, ARTIFACT_DIR, folder)
        for entry in sorted(os.listdir(root)):
            path = os.path.join(root, entry)
            if os.path.isdir(path):
                parts = sorted(p for p in os.listdir(path) if p.endswith(".parquet"))
                frames = [_read_part(run_id, f"{entry}/{p}", os.path.join(path, p)) for p in parts]
                out[entry] = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
            elif entry.endswith(".json"):
                try:
                    with open(path, encoding="utf-8") as handle:
                        out[entry[: -len(".json")]] = json.load(handle)
                except ValueError as error:
                    raise _corrupt(run_id, entry, error) from None
    return out
