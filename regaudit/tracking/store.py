"""Reaching the tracking store: opening it once, joining or starting a run (pending while
the store is away), calls bounded in time, and what a failure means (Unreachable: kept in
the spool and retried; Refused: set aside for good)."""

import os
import time
import uuid

from regaudit.errors import error_line


#: The id a run has while the tracking store could not create it: its writes wait in the
#: spool, and `regaudit sync` (or the next replay) creates the run and sends them there.
PENDING_PREFIX = "pending-"


def is_pending(run_id):
    return str(run_id).startswith(PENDING_PREFIX)


def bounded_call(function, timeout):
    """`function()` in a daemon thread, waited for at most `timeout` seconds (None: no
    bound); raises Unreachable on failure or timeout."""
    if timeout is None:
        try:
            return function()
        except Exception as error:  # noqa: BLE001 - said in one line by the caller
            raise failure_of(error) from None
    import threading

    outcome = {}

    def target():
        try:
            outcome["value"] = function()
        except BaseException as error:  # noqa: BLE001 - handed to the caller
            outcome["error"] = error

    worker = threading.Thread(target=target, name="regaudit-mlflow-write", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise Unreachable(f"no answer within {timeout:.1f} s")
    if "error" in outcome:
        raise failure_of(outcome["error"])
    return outcome.get("value")


_OPENED = set()


def open_store_once():
    """Open the tracking store once per process; for a SQLite store, under an exclusive
    lock on `<db>.regaudit.lock`. Opening a fresh SQLite store runs MLflow's schema
    migrations, and processes that open it at the same moment (a tuner's trials) race
    there and can leave it broken for everyone ("table _alembic_tmp_... already exists");
    with the lock the first process migrates and the others find the schema current."""
    import mlflow
    from mlflow.tracking import MlflowClient

    uri = mlflow.get_tracking_uri()
    if uri in _OPENED:
        return
    path = uri[len("sqlite:///"):] if uri.startswith("sqlite:///") else None
    if path and path != ":memory:":
        import fcntl

        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        with open(os.path.abspath(path) + ".regaudit.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                MlflowClient(uri).search_experiments(max_results=1)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
    _OPENED.add(uri)


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

    from regaudit.tracking import outage

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


def is_http(uri):
    """Whether `uri` names a tracking server (http or https)."""
    from urllib.parse import urlsplit

    return urlsplit(str(uri)).scheme in ("http", "https")


def check_health(uri, timeout):
    """Raise unless the store at `uri` answers: an http(s) tracking server its GET /health
    (with anything but a 5xx status), any other store one small query
    (`search_experiments`)."""
    import urllib.request
    from urllib.parse import urlsplit, urlunsplit

    if not is_http(uri):
        from mlflow.tracking import MlflowClient

        open_store_once()  # a fresh SQLite store migrates under its lock, as everywhere
        MlflowClient(str(uri)).search_experiments(max_results=1)
        return
    import urllib.error

    parts = urlsplit(str(uri))
    netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
    url = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/") + "/health", "", ""))
    try:
        with urllib.request.urlopen(url, timeout=timeout or 10):
            return
    except urllib.error.HTTPError as error:
        # a proxy whose server is down answers 502-504; any other answer (401 from a
        # proxy that guards /health too, 404) says the server is there: its writes decide
        if error.code >= 500:
            raise ConnectionError(f"health check answered {error.code}") from None


class quick_requests:
    """MLflow's HTTP requests inside the block: no retries, `timeout` seconds each (both
    are read from the environment at each request)."""

    NAMES = ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")

    def __init__(self, timeout):
        self.values = None if timeout is None else ("0", str(max(1, int(-(-timeout // 1)))))

    def __enter__(self):
        self.saved = {name: os.environ.get(name) for name in self.NAMES}
        if self.values is not None:
            os.environ.update(dict(zip(self.NAMES, self.values)))

    def __exit__(self, *exc):
        for name, value in self.saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class Unreachable(Exception):
    """An MLflow write that failed or did not finish within the audit's time budget."""


class Refused(Unreachable):
    """A write the store refused for good (the run deleted, permission denied, a request
    rejected as invalid): set aside, never replayed in front of later writes."""


#: MLflow error codes no retry changes (UNAUTHENTICATED is not one: wrong credentials
#: get fixed, and the writes wait in the spool until they are)
PERMANENT = frozenset({"RESOURCE_DOES_NOT_EXIST", "PERMISSION_DENIED", "INVALID_PARAMETER_VALUE",
                       "INVALID_STATE", "BAD_REQUEST"})


def failure_of(error):
    """The Unreachable (or Refused, for a permanent MLflow error) that stands for `error`."""
    code = getattr(error, "error_code", None)
    kind = Refused if code in PERMANENT else Unreachable
    return kind(f"{type(error).__name__}: {error_line(error)}")
