"""A real `mlflow server` on 127.0.0.1 with a SQLite backend, in its own process group,
that a test can stop and start again on the same port and store; and a spool folder per
test."""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    def __init__(self, folder):
        self.folder = folder
        self.port = _free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.process = None

    def start(self, timeout=90):
        mlflow = os.path.join(os.path.dirname(sys.executable), "mlflow")
        command = [mlflow, "server", "--host", "127.0.0.1", "--port", str(self.port),
                   "--backend-store-uri", f"sqlite:///{self.folder}/mlflow.db",
                   "--artifacts-destination", str(self.folder / "artifacts"), "--workers", "1"]
        log = open(self.folder / "server.log", "ab")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(command, stdout=log, stderr=log, start_new_session=True,
                                        cwd=self.folder)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mlflow server exited: {(self.folder / 'server.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError("mlflow server did not answer /health in time")

    def stop(self):
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait(timeout=20)
        self.process = None


@pytest.fixture
def server(tmp_path, monkeypatch):
    folder = tmp_path / "server"
    folder.mkdir()
    running = Server(folder)
    running.start()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", running.uri)
    yield running
    running.stop()


@pytest.fixture(autouse=True)
def spool_dir(tmp_path, monkeypatch):
    folder = tmp_path / "spool"
    monkeypatch.setenv("REGAUDIT_SPOOL_DIR", str(folder))
    return folder
