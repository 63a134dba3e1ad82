"""The train-end report: rendered and logged to the run in a background thread that a
script ending right after `fit` still waits for.

Python joins non-daemon threads only after it has run its threading exit hooks, among
them `concurrent.futures`' hook that refuses new work ("cannot schedule new futures after
interpreter shutdown"), which MLflow's artifact transfers need. So the first report
registers a hook of its own, after `concurrent.futures`' (the hooks run last-registered
first), that waits for every report still rendering, at most EXIT_WAIT seconds: a server
that stops answering mid-report (MLflow retries each call for minutes) must not keep the
script from ending. A report cut off there stays due (tag `regaudit.report`), and
`regaudit sync` logs it.
"""

import concurrent.futures.thread  # noqa: F401 - its exit hook must be registered before ours
import sys
import threading
import time
import warnings

from regaudit.errors import RegauditWarning
from regaudit.errors import error_line


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
                f"({type(error).__name__}: {error_line(error)}); "
                f"`regaudit sync {run_id}` logs it later.",
                RegauditWarning, stacklevel=1)
        finally:
            _PENDING.discard(threading.current_thread())

    # a daemon: the exit hook waits for it, within EXIT_WAIT
    thread = threading.Thread(target=work, name=f"regaudit-report-{run_id}", daemon=True)
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


#: seconds the interpreter's exit waits for train-end reports still rendering
EXIT_WAIT = 300.0


def _wait_for_reports():
    """At interpreter exit, before `concurrent.futures` stops taking work: let every
    report thread finish, all of them within EXIT_WAIT seconds."""
    deadline = time.monotonic() + EXIT_WAIT
    for thread in list(_PENDING):
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            run_id = thread.name[len("regaudit-report-"):]
            print(f"regaudit: the train-end report of run {run_id} did not finish within "
                  f"{EXIT_WAIT:.0f} s of the script's end (MLflow did not answer); "
                  f"`regaudit sync {run_id}` logs it later.", file=sys.stderr)
