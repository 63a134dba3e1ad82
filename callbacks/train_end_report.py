"""The train-end report: rendered and logged to the run in a background thread that a
script ending right after `fit` still waits for.

Python joins non-daemon threads only after it has run its threading exit hooks, among
them `concurrent.futures`' hook that refuses new work ("cannot schedule new futures after
interpreter shutdown"), which MLflow's artifact transfers need. So the first report
registers a hook of its own, after `concurrent.futures`' (the hooks run last-registered
first), that waits for every report still rendering.
"""

import concurrent.futures.thread  # noqa: F401 - its exit hook must be registered before ours
import threading
import warnings

from regaudit.errors import RegauditWarning
from regaudit.secrets import redact


def start_report(run_id):
    """Render the run's report and log it (HTML into regaudit/report/, each figure as
    regaudit/plots/<name>.png) in a background thread; a failure is one warning."""
    def work():
        try:
            from regaudit.reports.publish import log_run_report

            log_run_report(run_id)
        except Exception as error:  # noqa: BLE001 - training is over; say it, do not raise
            warnings.warn(
                f"regaudit: the train-end report of run {run_id} failed "
                f"({type(error).__name__}: {redact(str(error).splitlines()[0][:300] if str(error) else '')}); "
                f"`regaudit sync` or `regaudit report {run_id}` writes it later.",
                RegauditWarning, stacklevel=1)
        finally:
            _PENDING.discard(threading.current_thread())

    thread = threading.Thread(target=work, name=f"regaudit-report-{run_id[:8]}", daemon=False)
    with _LOCK:
        _register_exit_hook()
        _PENDING.add(thread)
    thread.start()
    return thread


_PENDING = set()
_LOCK = threading.Lock()
_REGISTERED = []


def _register_exit_hook():
    if not _REGISTERED:
        threading._register_atexit(_wait_for_reports)
        _REGISTERED.append(True)


def _wait_for_reports():
    """At interpreter exit, before `concurrent.futures` stops taking work: let every
    report thread finish (each is bounded by its MLflow calls' own timeouts)."""
    for thread in list(_PENDING):
        thread.join()
