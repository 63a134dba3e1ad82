"""Whether the tracking store is away, known once per process and tracking URI, so that an
outage costs nothing after its first failure.

A write that fails for lack of a store (refused, unreachable, no answer within its time
budget: `reach.Unreachable`, not a `reach.Refused` write) marks the store away. From then
on, every bounded write of any run goes straight to the spool, while a daemon thread
probes the store every PROBE_SECONDS (an http(s) server's `GET /health`, else one small
query), each probe bounded by PROBE_TIMEOUT; the first probe that answers marks the store
back, and the next audit replays the spool.

What an audit pays depends on how the store failed. A store that fails fast (a refused
connection: a stopped server) is asked again at each audit's start, within FAST seconds,
so an audit right after the server's restart already replays. A store that hangs (no
answer) is waited for once, within the first write's budget, and never again: the
background probe alone notices it back. A new fit's run and the train end's last replay
ask once more themselves (`check(..., fresh=True)`, within PROBE_TIMEOUT), so a server
back since the last probe gets them at once.
"""

import threading
import time

from regaudit.tracking.reach import Unreachable, bounded_call, check_health, is_http

#: seconds between two probes of a store that is away
PROBE_SECONDS = 2.0
#: seconds one probe waits for an answer
PROBE_TIMEOUT = 2.0
#: a failure that came back within this many seconds is a fast one (a refused
#: connection), asked again at each audit within this bound
FAST = 0.5

_LOCK = threading.Lock()
_AWAY = {}  # tracking URI -> (reason, whether it failed fast)
_PROBING = set()  # tracking URIs a probe thread watches


def away(uri):
    """Why the store at `uri` is away (a one-line reason), or None when it is not known to be."""
    with _LOCK:
        found = _AWAY.get(uri)
    return None if found is None else found[0]


def mark_away(uri, reason, seconds=None, fast=None):
    """Record that the store at `uri` is away (its failure took `seconds`) and start
    watching it for its return. `fast`: whether it fails fast, when the caller knows (a
    health check); else a failure within FAST seconds is fast, and one that took longer
    (or an unknown time) is classified by asking once more, within FAST: a write MLflow
    retried against a refused connection took its whole budget, yet the next ask fails
    at once (a fast store, asked again at each audit); an ask that gets no answer within
    FAST is a hanging store (left to the background probe)."""
    if fast is None:
        fast = seconds is not None and seconds < FAST
        if not fast:
            again, took = _ask(uri, FAST)
            fast = again is None or took < FAST
    with _LOCK:
        _AWAY[uri] = (str(reason), fast)
        if uri in _PROBING:
            return
        _PROBING.add(uri)
    threading.Thread(target=_watch, args=(uri,), name="regaudit-store-probe", daemon=True).start()


def mark_up(uri):
    with _LOCK:
        _AWAY.pop(uri, None)


def _ask(uri, timeout):
    """(None, seconds) when the store answers within `timeout`, else (the reason, seconds)."""
    started = time.monotonic()
    try:
        bounded_call(lambda: check_health(uri, timeout), timeout)
    except Unreachable as error:
        return str(error), time.monotonic() - started
    return None, time.monotonic() - started


def check(uri, timeout, fresh=False):
    """Before writes: the reason the store at `uri` is away, or None. A store known away
    is asked again only where that is cheap (it failed fast: within FAST seconds) or
    `fresh` is asked for (within PROBE_TIMEOUT); else it stays away at no cost. An http(s)
    server not known away is asked for its health once, within `timeout` (a refused
    connection answers in milliseconds, where MLflow's own requests would retry for the
    whole budget); other stores are not asked."""
    with _LOCK:
        known = _AWAY.get(uri)
    if known is not None:
        reason, fast = known
        if not (fresh or fast):
            return reason
        timeout = min(timeout or PROBE_TIMEOUT, PROBE_TIMEOUT if fresh else FAST)
    elif not is_http(uri):
        return None
    reason, seconds = _ask(uri, timeout)
    if reason is None:
        mark_up(uri)
        return None
    # failed within FAST: fast; no answer within a longer `timeout`: hanging, not asked again
    mark_away(uri, reason, seconds, fast=seconds < FAST)
    return reason


def _watch(uri):
    """Probe the store every PROBE_SECONDS until it answers; a store marked away again
    while the last probe ran is watched by the next `mark_away`'s thread."""
    while True:
        time.sleep(PROBE_SECONDS)
        reason, _ = _ask(uri, PROBE_TIMEOUT)
        with _LOCK:
            if reason is None:
                _AWAY.pop(uri, None)
            if uri not in _AWAY:
                _PROBING.discard(uri)
                return
