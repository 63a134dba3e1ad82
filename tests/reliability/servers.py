"""A real `mlflow server` on 127.0.0.1 in its own process group, that a test can stop,
pause and start again on the same port and store (used by the reliability and the
study tests)."""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    def __init__(self, folder, backend=None, app_name=None, env=None):
        self.folder = folder
        self.backend = backend or f"sqlite:///{folder}/mlflow.db"
        self.app_name = app_name
        self.env = dict(os.environ, **(env or {}))
        self.port = _free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.process = None

    def start(self, timeout=90):
        mlflow = os.path.join(os.path.dirname(sys.executable), "mlflow")
        command = [mlflow, "server", "--host", "127.0.0.1", "--port", str(self.port),
                   "--backend-store-uri", self.backend,
                   "--artifacts-destination", str(self.folder / "artifacts"), "--workers", "1"]
        if self.app_name:
            command += ["--app-name", self.app_name]
        log = open(self.folder / "server.log", "ab")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(command, stdout=log, stderr=log, start_new_session=True,
                                        cwd=self.folder, env=self.env)
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

    def pause(self):
        """SIGSTOP the server's processes: a server that hangs (connections are accepted,
        nothing answers), the slow case of an outage."""
        os.killpg(self.process.pid, signal.SIGSTOP)

    def resume(self):
        os.killpg(self.process.pid, signal.SIGCONT)

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
