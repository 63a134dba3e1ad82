"""The MLflow side of an audit: write a run's metrics, tags, tables and artifacts within a
time budget (else into the spool), replay the spool, end the run. Reaching the store
(opening it, starting a run, bounded calls) is `regaudit.tracking.run_opening`; reading a run back,
`regaudit.tracking.artifacts`."""

import json
import os
import tempfile
import time

from regaudit.errors import error_line
from regaudit.schema import ARTIFACT_DIR, part_file_name, table_part_path
from regaudit.tracking.reach import (
    Refused, Unreachable, bounded_call, failure_of, open_store_once, quick_requests)
from regaudit.tracking.run_opening import is_pending

#: MLflow accepts at most 1,000 metrics in one log_batch call.
MAX_BATCH = 1000


class RunWriter:
    """Writes one run's audit data with an explicit run id: metrics in `log_batch`
    calls of at most 1,000, tables as one Parquet part per audit, JSON and PNG artifacts.

    With a time budget (`begin(seconds)`, called at every audit), each MLflow call runs
    in a daemon thread and the audit waits for it at most until the budget is spent; a
    write that fails or times out, and every write after it in that audit, goes to the
    run's local spool (`regaudit.tracking.spool`) and is replayed at the next audit, at train end,
    or by `regaudit sync`. Without a budget (reports, `regaudit sync`) calls run inline.
    """

    def __init__(self, run_id, client=None):
        from regaudit.tracking.spool import Spool

        import mlflow

        self.run_id = run_id
        self._client = client
        self._uri = mlflow.get_tracking_uri() if client is None else client.tracking_uri
        self.spool = Spool(run_id)
        #: the MLflow run a pending run became (from the spool's journal, once created)
        created = self.spool.created_run()
        if created:
            self.run_id = created
        self._deadline = None
        self._offline = False
        self._away = None  # why the store is away, when it is
        self.spooled = 0  # writes sent to the spool by this writer
        self.refused = 0  # writes the store refused for good, kept aside
        self.lost = 0  # writes neither MLflow nor the spool could take
        self.last_error = None
        self.last_refusal = None
        self.spool_error = None
        self._has_pending = None  # whether the spool holds entries (read once, then kept)

    @property
    def client(self):
        """The MLflow client, made on first use inside a bounded call: making it opens the
        store (a fresh SQLite store runs its schema migrations then, and several processes
        starting at once race there), so a failure spools like any other write and the
        next replay tries again."""
        if self._client is None:
            from mlflow.tracking import MlflowClient

            open_store_once()
            self._client = MlflowClient()
        return self._client

    # -- the bounded path ---------------------------------------------------------------

    def begin(self, seconds, final=False):
        """Start an audit's writes with a budget of `seconds` (None: unbounded), after
        replaying what the spool holds. A store known away (`regaudit.tracking.outage`) costs
        nothing: the writes go straight to the spool; at train end (`final`) it is asked
        once more, within PROBE_TIMEOUT, so a server back since the last audit gets them."""
        from regaudit.tracking import outage

        self._deadline = None if seconds is None else time.monotonic() + seconds
        self._offline = False
        if seconds is not None:
            self._away = outage.check(self._uri, seconds, fresh=final)
            self._offline = self._away is not None
            if self._offline:
                self.last_error = self._away
        return self.replay()

    def _call(self, function, *args):
        from regaudit.tracking import outage

        if self._deadline is None:
            return function(*args)
        remaining = self._deadline - time.monotonic()
        if self._offline or remaining <= 0:
            raise Unreachable(self._away or "the audit's MLflow time budget is spent")
        started = time.monotonic()
        try:
            return bounded_call(lambda: function(*args), remaining)
        except Refused:
            raise  # a refusal says nothing of the next write
        except Unreachable as error:
            self._offline = True
            self._away = str(error)
            outage.mark_away(self._uri, error, time.monotonic() - started)
            raise

    def create_pending(self, pending):
        """Spool the creation of a pending run, first in its journal."""
        self._keep("create_run", pending, None)

    def _write(self, kind, payload, file=None):
        """Send one write to MLflow within the budget, else to the spool; a write the
        store refuses for good is set aside."""
        if not is_pending(self.run_id) and not self.spool_pending():
            try:
                return self._call(self._apply, {"kind": kind, "payload": payload, "file": file})
            except Unreachable as error:
                self._not_taken(kind, payload, file, error)
                return None
        self._keep(kind, payload, file)
        return None

    def _not_taken(self, kind, payload, file, failure):
        """A write the store did not take: set aside when refused for good, else spooled."""
        if isinstance(failure, Refused):
            self._set_aside({"kind": kind, "payload": payload}, file, failure)
        else:
            self.last_error = str(failure)
            self._keep(kind, payload, file)

    def _keep(self, kind, payload, file):
        from regaudit.tracking.spool import SpoolFull

        try:
            self.spool.add(kind, payload, file)
        except (SpoolFull, OSError) as error:  # a full disk, an unwritable folder, the bound
            self.lost += 1
            self.spool_error = error_line(error) or type(error).__name__
            return
        self.spooled += 1
        self._has_pending = True

    def _set_aside(self, entry, file, error):
        """Keep a refused write in `<spool>/refused/` (never replayed) with the reason."""
        from regaudit.tracking.spool import Spool

        self.refused += 1
        self.last_refusal = str(error)
        try:
            Spool(self.spool.run_id, root=os.path.join(self.spool.root, "refused")).add(
                entry["kind"], {"write": entry["payload"], "reason": str(error)}, file)
        except OSError:
            self.lost += 1

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

        def aside(entry, error):
            self._set_aside(entry, entry.get("file"), error)

        def apply(entry):
            try:
                return self._call(self._apply, entry)
            except Exception as error:  # noqa: BLE001 - unbounded calls (`regaudit sync`) too
                failure = error if isinstance(error, Unreachable) else failure_of(error)
                if not isinstance(failure, Refused):
                    self.last_error = str(failure)
                raise failure from None

        replayed, left = self.spool.replay(apply, stop, refused=(Refused, aside))
        self._has_pending = left > 0
        return replayed, left

    def _apply(self, entry):
        from mlflow.entities import Metric, RunTag

        kind, payload = entry["kind"], entry["payload"]
        if kind == "create_run":
            self.run_id = self._create_run(payload)
            self.spool.mark_created(self.run_id)
        elif kind == "end_run":
            self.client.set_terminated(self.run_id, payload["status"], payload["end_time"])
        elif is_pending(self.run_id):
            raise Unreachable("the run is not created yet")
        elif kind == "metrics":
            self.client.log_batch(self.run_id, metrics=[Metric(k, v, t, s) for k, v, t, s in payload])
        elif kind == "tags":
            self.client.log_batch(self.run_id, tags=[RunTag(k, v) for k, v in payload.items()])
        elif kind == "artifact":
            self.client.log_artifact(self.run_id, entry["file"], artifact_path=payload["artifact_path"])
        else:
            raise ValueError(f"unknown spool entry kind {kind!r}")

    def _create_run(self, payload):
        """Create the MLflow run a pending run stands for and return its id; idempotent:
        the run carries the tag `regaudit.pending_id`, and a run that already has it (a
        create that timed out here but landed) is used instead of a second one."""
        experiment_id = payload.get("experiment_id")
        if not experiment_id and payload.get("experiment_name"):
            found = self.client.get_experiment_by_name(payload["experiment_name"])
            experiment_id = (found.experiment_id if found is not None
                             else self.client.create_experiment(payload["experiment_name"]))
        experiment_id = experiment_id or "0"
        pending_id = payload.get("pending_id") or self.spool.run_id
        existing = self.client.search_runs(
            [experiment_id], filter_string=f"tags.`regaudit.pending_id` = '{pending_id}'", max_results=1)
        if existing:
            return existing[0].info.run_id
        tags = dict(payload.get("tags") or {}, **{"regaudit.pending_id": pending_id})
        run = self.client.create_run(experiment_id, start_time=payload["start_time"], tags=tags,
                                     run_name=payload.get("run_name"))
        return run.info.run_id

    def end(self, status="FINISHED", timeout=None):
        """End the run regaudit started. A pending run's end is spooled with its other
        writes. MLflow's active run is ended with MLflow's own `end_run` (which takes it
        off the active-run stack, so MLflow's exit hook does not end it again), its
        request given `timeout` seconds and no retries (MLflow would retry for minutes
        against a server that is away); an end the store did not take is spooled too,
        for the next replay or `regaudit sync`. No thread is started: this also runs
        from the interpreter's exit hook."""
        import mlflow

        entry = {"status": status, "end_time": int(time.time() * 1000)}
        if is_pending(self.run_id):
            self._keep("end_run", entry, None)
            return
        from regaudit.tracking import outage

        active = mlflow.active_run()
        if outage.away(self._uri) is not None and timeout is not None:
            timeout = min(timeout, 1.0)  # the store is away: one short try, then the spool
        try:
            with quick_requests(timeout):
                if active is not None and active.info.run_id == self.run_id:
                    mlflow.end_run(status=status)
                else:  # a pending run a replay created: never on MLflow's stack
                    self.client.set_terminated(self.run_id, status, entry["end_time"])
        except Exception as error:  # noqa: BLE001 - kept, as every write the store did not take
            self._not_taken("end_run", entry, None, failure_of(error))

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
        import random

        from regaudit.schema import TABLE_ACTIVATIONS

        names = [e["file"] for e in self.spool.pending() if "file" in e]
        if is_pending(self.run_id):
            listed = []  # a run not yet created has no parts
        else:
            try:
                listed = self._call(lambda: self.client.list_artifacts(
                    self.run_id, table_part_path(TABLE_ACTIVATIONS)))
            except Unreachable as error:
                # the store is away: number this fit's parts from a random block of
                # 100,000, so they cannot overwrite an earlier fit's parts in this run
                self.last_error = str(error)
                block = 100_000 * random.randint(1, 9)
                return max([block - 1] + [int(n.rsplit("audit-", 1)[1].split(".")[0])
                                          for n in names if "audit-" in n]) + 1
        names += [item.path for item in listed]
        numbers = [int(name.rsplit("audit-", 1)[1].split(".")[0])
                   for name in names if "audit-" in name]
        return max(numbers, default=-1) + 1

    def logged_steps(self, key):
        """The steps at which metric `key` already has a value in this run (MLflow's
        history and the spool's waiting writes); only what the spool holds when the store
        is away or the run is pending."""
        steps = {entry[3] for e in self.spool.pending() if e.get("kind") == "metrics"
                 for entry in e.get("payload", ()) if entry[0] == key}
        if not is_pending(self.run_id):
            try:
                history = self._call(lambda: self.client.get_metric_history(self.run_id, key))
                steps.update(metric.step for metric in history)
            except Unreachable as error:
                self.last_error = str(error)
        return steps

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
