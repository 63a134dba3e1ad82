"""Whether the tracking store is away, known once per process and tracking URI, so that an
outage costs nothing after its first failure.

A write that fails for lack of a store (refused, unreachable, no answer within its time
budget: `store.Unreachable`, not a `store.Refused` write) marks the store away. From then
on, every bounded write of any run goes straight to the spool without waiting, while a
daemon thread probes the store every PROBE_SECONDS (an http(s) server's `GET /health`,
else one small query), each probe bounded by PROBE_TIMEOUT; the first probe that answers
marks the store back, and the next audit replays the spool. A hanging server is found
within the first write's budget and never waited for again; a refused connection is
found at once by the health check that opens an audit's writes (`check`).
"""

import threading
import time

#: seconds between two probes of a store that is away
PROBE_SECONDS = 2.0
#: seconds one probe waits for an answer
PROBE_TIMEOUT = 2.0

_LOCK = threading.Lock()
_AWAY = {}  # tracking URI -> (reason, monotonic time it was marked away)
_PROBING = set()  # tracking URIs a probe thread watches


def away(uri):
    """Why the store at `uri` is away (a one-line reason), or None when it is not known to be."""
    with _LOCK:
        found = _AWAY.get(uri)
    return None if found is None else found[0]


def mark_away(uri, reason):
    """Record that the store at `uri` is away and start watching it for its return."""
    with _LOCK:
        if uri not in _AWAY:
            _AWAY[uri] = (str(reason), time.monotonic())
        if uri in _PROBING:
            return
        _PROBING.add(uri)
    threading.Thread(target=_watch, args=(uri,), name="regaudit-store-probe", daemon=True).start()


def mark_up(uri):
    with _LOCK:
        _AWAY.pop(uri, None)


def probe(uri, timeout=PROBE_TIMEOUT):
    """True when the store at `uri` answers within `timeout` seconds (marking it back)."""
    if not _answers(uri, timeout):
        return False
    mark_up(uri)
    return True


def _answers(uri, timeout=PROBE_TIMEOUT):
    from regaudit.store import Unreachable, _bounded, check_health

    try:
        _bounded(lambda: check_health(uri, timeout), timeout)
    except Unreachable:
        return False
    return True


def check(uri, timeout):
    """Before an audit's writes: a store known away stays away (None, at no cost); an
    http(s) server is asked for its health once, within `timeout` (a refused connection
    answers in milliseconds, where MLflow's own requests would retry for the whole
    budget). Returns the reason the store is away, or None."""
    reason = away(uri)
    if reason is not None:
        return reason
    from regaudit.store import Unreachable, _bounded, check_health, is_http

    if not is_http(uri):
        return None
    try:
        _bounded(lambda: check_health(uri, timeout), timeout)
    except Unreachable as error:
        mark_away(uri, error)
        return str(error)
    return None


def _watch(uri):
    """Probe the store every PROBE_SECONDS until it answers; a store marked away again
    while the last probe ran is watched by the next `mark_away`'s thread."""
    while True:
        time.sleep(PROBE_SECONDS)
        answered = _answers(uri)
        with _LOCK:
            if answered:
                _AWAY.pop(uri, None)
            if uri not in _AWAY:
                _PROBING.discard(uri)
                return
