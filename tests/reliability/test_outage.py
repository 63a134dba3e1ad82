"""An outage costs nothing after its first failure (`regaudit.tracking.outage`): a tracking server
that refuses connections or accepts them and never answers is found at the first write,
and the writes after it go straight to the spool, not waited for audit after audit,
while a background probe notices the server back."""

import socket
import threading
import time

import pytest

from regaudit.tracking import outage
from regaudit.tracking.spool import Spool
from servers import _free_port
from test_real_server import tiny_model


class Hanging:
    """A TCP server on 127.0.0.1 that accepts connections and never answers (a hung
    tracking server), counting them; `answer()` makes it answer every request 200."""

    def __init__(self):
        self.port = _free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.connections = 0
        self.answering = False
        self._sockets = []
        self._listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            if self.answering:
                client.recv(65536)
                client.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nOK")
                client.close()
            else:
                self._sockets.append(client)  # held open, never answered

    def answer(self):
        self.answering = True

    def close(self):
        self._listener.close()
        for client in self._sockets:
            client.close()


def audited_fit(rng, epochs=4, write_timeout=2.0):
    from regaudit import RegAudit

    x = rng.normal(size=(64, 12)).astype("float32")
    y = rng.integers(0, 3, 64)
    audit = RegAudit(probe_size=16, mc_samples=2, write_timeout=write_timeout, report=False)
    with pytest.warns(Warning, match="kept in the local spool"):
        tiny_model().fit(x, y, validation_split=0.25, epochs=epochs, batch_size=16, verbose=0,
                         callbacks=[audit])
    return audit


def test_a_hanging_server_is_waited_for_once_and_then_probed_in_the_background(spool_dir, rng,
                                                                               monkeypatch):
    hanging = Hanging()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", hanging.uri)
    try:
        started = time.monotonic()
        audit = audited_fit(rng, epochs=4)
        elapsed = time.monotonic() - started
        # one wait (the run's creation: its health check gets no answer within 2 s), then
        # every audit's writes straight to the spool: 5 audits, history, tags, the end
        assert outage.away(hanging.uri) is not None
        assert audit.run.writer.lost == 0 and audit.run.writer.spooled > 0
        kinds = [entry["kind"] for entry in Spool(audit.run.writer.spool.run_id).pending()]
        assert kinds[0] == "create_run" and kinds[-1] == "end_run"
        assert kinds.count("artifact") >= 5 * 4  # activations, shift, ensemble, bn per audit
        # no connection per audit: the first check, one probe per PROBE_SECONDS, train end
        assert hanging.connections <= 3 + elapsed / outage.PROBE_SECONDS, (hanging.connections, elapsed)
        hanging.answer()
        deadline = time.monotonic() + outage.PROBE_SECONDS + 2 * outage.PROBE_TIMEOUT + 5
        while outage.away(hanging.uri) is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert outage.away(hanging.uri) is None  # the background probe saw it back
    finally:
        hanging.close()


def test_a_refused_connection_marks_the_store_away_at_once_and_nothing_is_lost(spool_dir, rng,
                                                                               monkeypatch):
    uri = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    started = time.monotonic()
    audit = audited_fit(rng, epochs=3, write_timeout=30.0)
    elapsed = time.monotonic() - started
    assert "refused" in (outage.away(uri) or "").lower()
    assert audit.run.writer.lost == 0
    pending = Spool(audit.run.writer.spool.run_id).pending()
    tables = [e["payload"]["artifact_path"] for e in pending if e["kind"] == "artifact"]
    assert tables.count("regaudit/activations") == 4  # every audit kept
    # the 30 s budget never waited out: MLflow's retries against a refused port would
    # take it whole at every audit (4 x 30 s); a tiny fit's own time is what remains
    assert elapsed < 25


@pytest.mark.parametrize("status, away", [(200, False), (401, False), (404, False), (503, True)])
def test_a_health_check_answered_by_a_proxy_counts_only_a_5xx_as_away(status, away):
    """A proxy in front of the server may guard or not route /health (401, 404): the
    server is there and its writes decide; a 502-504 says the server behind it is down."""
    import http.server

    class Answer(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    uri = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert (outage.check(uri, 2.0) is not None) is away
    finally:
        server.shutdown()
        outage.mark_up(uri)
