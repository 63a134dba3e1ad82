"""The fit's run in the tracking store: joined or started (pending while the store is
away, `outage`), and activated. Reaching the store itself is `reach`."""

import os
import time
import uuid

from regaudit.tracking import outage
from regaudit.tracking.reach import Refused, Unreachable, bounded_call, open_store_once, quick_requests


#: The id a run has while the tracking store could not create it: its writes wait in the
#: spool, and `regaudit sync` (or the next replay) creates the run and sends them there.
PENDING_PREFIX = "pending-"


def is_pending(run_id):
    return str(run_id).startswith(PENDING_PREFIX)


def join_or_start_run(run_name=None, timeout=None, activate=True):
    """Return (run_id, started, pending): the active MLflow run (also the one
    `mlflow.keras.autolog()` opens inside `fit`), else a new one this process starts.
    When the tracking store cannot create it within `timeout` seconds, the run is
    pending: its id is `pending-<hex>`, `pending` holds what creating it needs (the
    experiment, the run name, the tags MLflow would set, the start time) and its writes
    wait in the spool until `regaudit sync` or a later replay creates it. A run started
    here becomes MLflow's active run unless `activate` is False (it is created from a
    background thread, whose active run no other thread sees: `activate_run` then makes
    it active in the fit's thread)."""
    import mlflow
    from mlflow.tracking.context.registry import resolve_tags

    active = mlflow.active_run()
    if active is not None:
        return active.info.run_id, False, None
    tags = resolve_tags({})
    pending_id = PENDING_PREFIX + uuid.uuid4().hex
    started = int(time.time() * 1000)
    experiment_name = os.environ.get("MLFLOW_EXPERIMENT_NAME")
    from mlflow.tracking import fluent

    # set_experiment() keeps its choice in the process: the pending run goes there too
    experiment_id = os.environ.get("MLFLOW_EXPERIMENT_ID") or getattr(fluent, "_active_experiment_id", None)
    try:
        created_id = _create_run(tags, started, run_name, timeout)
        if not activate:
            return created_id, True, None
        run = mlflow.start_run(run_id=created_id)
        return run.info.run_id, True, None
    except Unreachable as error:
        from regaudit.tracking.secrets import redact

        pending = {"experiment_name": experiment_name, "experiment_id": experiment_id,
                   "run_name": run_name, "tags": {k: redact(str(v)) for k, v in tags.items()},
                   "start_time": started, "reason": str(error), "pending_id": pending_id}
        return pending_id, True, pending


def _create_run(tags, started, run_name, timeout):
    """Create the run within `timeout` seconds and return its id, else raise Unreachable
    (and say the store is away). A server that does not answer its health check gets no
    create request at all: a request left retrying in a thread could create a run after
    we gave up on it; a store already known away (an earlier fit's writes) is not waited
    for again, but a new fit asks it again."""
    import threading

    import mlflow
    from mlflow.tracking import MlflowClient

    given_up = threading.Event()

    def create():
        from mlflow.tracking.fluent import _get_experiment_id

        open_store_once()
        experiment = _get_experiment_id()
        if given_up.is_set():  # the caller went on with a pending run: no orphan run
            raise Unreachable("gave up waiting")
        return MlflowClient().create_run(experiment, start_time=started, tags=tags,
                                         run_name=run_name)

    uri = mlflow.get_tracking_uri()
    reason = outage.check(uri, timeout, fresh=True)
    if reason is not None:
        raise Unreachable(reason)
    try:
        return bounded_call(create, timeout).info.run_id
    except Unreachable as error:
        given_up.set()
        if not isinstance(error, Refused):
            outage.mark_away(uri, error)
        raise


def activate_run(run_id, timeout=None):
    """Make the run regaudit started MLflow's active run in this thread (as
    `join_or_start_run` does), unless another run is active here; the request is given
    `timeout` seconds and no retries, and a failure leaves the run inactive (regaudit
    ends it itself)."""
    import mlflow

    if mlflow.active_run() is not None:
        return False
    try:
        with quick_requests(timeout):
            mlflow.start_run(run_id=run_id)
    except Exception:  # noqa: BLE001 - the run is written and ended by id all the same
        return False
    return True


