"""Reaching the tracking store: opening it once, calls bounded in time, its health asked,
MLflow's HTTP requests without retries, and what a failure means (`Unreachable`: kept in
the spool and retried; `Refused`: set aside for good)."""

import os
import threading
import urllib.error
import urllib.request
from urllib.parse import urlsplit, urlunsplit

from regaudit.errors import error_line


def bounded_call(function, timeout):
    """`function()` in a daemon thread, waited for at most `timeout` seconds (None: no
    bound); raises Unreachable on failure or timeout."""
    if timeout is None:
        try:
            return function()
        except Exception as error:  # noqa: BLE001 - said in one line by the caller
            raise failure_of(error) from None

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
        import fcntl  # POSIX only: imported where a SQLite store is opened

        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        with open(os.path.abspath(path) + ".regaudit.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                MlflowClient(uri).search_experiments(max_results=1)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
    _OPENED.add(uri)


def is_http(uri):
    """Whether `uri` names a tracking server (http or https)."""
    return urlsplit(str(uri)).scheme in ("http", "https")


def check_health(uri, timeout):
    """Raise unless the store at `uri` answers: an http(s) tracking server its GET /health
    (with anything but a 5xx status), any other store one small query
    (`search_experiments`)."""
    if not is_http(uri):
        from mlflow.tracking import MlflowClient

        open_store_once()  # a fresh SQLite store migrates under its lock, as everywhere
        MlflowClient(str(uri)).search_experiments(max_results=1)
        return
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
