"""Real `mlflow server`s on 127.0.0.1 (`servers.Server`: SQLite or PostgreSQL backed, in
their own process group, stopped and started again on the same port and store) as
fixtures; and a spool folder per test."""

import os
import subprocess
import sys

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(__file__))  # test_real_server's model and checks, servers

from servers import Server, _free_port  # noqa: E402 - this folder is on sys.path


def _backend(request, kind):
    """The backend store of a server of `kind`: None (SQLite in the server's folder) or a
    new database in the session's PostgreSQL cluster."""
    if kind != "postgresql":
        return None
    cluster = request.getfixturevalue("postgres")
    database = f"mlflow_{os.getpid()}_{_free_port()}"
    subprocess.run([os.path.join(cluster.bin, "psql"), "-h", "127.0.0.1", "-p", str(cluster.port),
                    "-U", "postgres", "-c", f"CREATE DATABASE {database}"], check=True,
                   capture_output=True, timeout=60)
    return cluster.uri.rsplit("/", 1)[0] + "/" + database


def _started(request, folder, kind):
    running = Server(folder, _backend(request, kind))
    running.database = request.getfixturevalue("postgres") if kind == "postgresql" else None
    running.start()
    return running


@pytest.fixture(params=["sqlite"])
def server(request, tmp_path, monkeypatch):
    """A real `mlflow server` of the test's own (it may stop it), with proxied artifacts,
    backed by SQLite; tests that parametrize it indirectly with "postgresql" get a
    PostgreSQL-backed one."""
    folder = tmp_path / "server"
    folder.mkdir()
    running = _started(request, folder, request.param)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", running.uri)
    yield running
    running.stop()


#: kind -> the shared server of this process; stopped when the session ends, not at
#: fixture teardown: a pytest-xdist worker can tear every fixture down between two tests
#: of a module (it runs a test before it knows the next), which would start it again
_SHARED = {}


def pytest_sessionfinish(session, exitstatus):
    for running in _SHARED.values():
        running.resume()
        running.stop()
    _SHARED.clear()
    while _CLUSTER:
        _CLUSTER.pop().remove()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def shared_server(request, tmp_path_factory):
    """One real `mlflow server` per backend (SQLite, PostgreSQL) for the tests that do not
    stop it (a test that pauses it resumes it): each start costs 10-15 s."""
    running = _SHARED.get(request.param)
    if running is None:
        running = _started(request, tmp_path_factory.mktemp("shared-server"), request.param)
        # a server's first requests are slow (lazy imports, the store's first connections):
        # made here, so a test's first create gets the answer time a running server has
        from mlflow.tracking import MlflowClient

        warm = MlflowClient(running.uri)
        warm.delete_run(warm.create_run("0").info.run_id)
        _SHARED[request.param] = running
    yield running
    running.resume()


@pytest.fixture
def live_server(shared_server, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", shared_server.uri)
    yield shared_server
    shared_server.resume()  # a failed test must not leave it paused for the next


@pytest.fixture(autouse=True)
def spool_dir(tmp_path, monkeypatch):
    folder = tmp_path / "spool"
    monkeypatch.setenv("REGAUDIT_SPOOL_DIR", str(folder))
    return folder


def _postgres_bin():
    """The folder of PostgreSQL's server programs (Debian's layout, or on PATH)."""
    import glob
    import shutil

    found = shutil.which("pg_ctl")
    if found:
        return os.path.dirname(os.path.realpath(found))
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return os.path.dirname(versions[-1]) if versions else None


class Postgres:
    """A throwaway PostgreSQL cluster on 127.0.0.1 (trust authentication), run as the
    `postgres` user when the tests run as root (PostgreSQL refuses root)."""

    def __init__(self, folder, bin_dir):
        self.folder, self.bin = folder, bin_dir
        self.port = _free_port()
        self.data = folder / "data"
        self.user = None
        if os.geteuid() == 0:
            import pwd

            self.user = pwd.getpwnam("postgres")

    def _run(self, *command, check=True):
        kwargs = {}
        if self.user is not None:
            kwargs.update(user=self.user.pw_uid, group=self.user.pw_gid, extra_groups=[])
        return subprocess.run([os.path.join(self.bin, command[0]), *command[1:]], check=check,
                              capture_output=True, text=True, timeout=120, **kwargs)

    def init(self):
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.user is not None:  # PostgreSQL refuses to run as root
            os.chown(self.folder, self.user.pw_uid, self.user.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        self.start()
        subprocess.run([os.path.join(self.bin, "psql"), "-h", "127.0.0.1", "-p", str(self.port),
                        "-U", "postgres", "-c", "CREATE DATABASE mlflow"], check=True,
                       capture_output=True, timeout=60)

    def start(self):
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.folder / "pg.log"), "-w", "-o",
                  f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1", "start")

    def stop(self):
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop", check=False)

    def remove(self):
        import shutil

        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    @property
    def uri(self):
        return f"postgresql://postgres@127.0.0.1:{self.port}/mlflow"


_CLUSTER = []


@pytest.fixture(scope="session")
def postgres():
    """The process's throwaway PostgreSQL cluster, made once and removed when the session
    ends (for the same reason as the shared servers)."""
    try:
        import psycopg  # noqa: F401 - the PostgreSQL driver SQLAlchemy picks for postgresql://
    except ImportError:
        pytest.skip("psycopg is not installed: `pip install -e '.[test]'` brings psycopg[binary]")
    bin_dir = _postgres_bin()
    if bin_dir is None:
        pytest.skip("no PostgreSQL server here: .ci/run installs Debian's `postgresql` with "
                    "apt-get when it can; install it (apt-get install postgresql) to run these")
    if not _CLUSTER:
        import pathlib
        import tempfile

        # not under pytest's own 0700 temporary folder: the `postgres` user must reach it
        folder = pathlib.Path(tempfile.mkdtemp(prefix="regaudit-pg-"))
        cluster = Postgres(folder, bin_dir)
        _CLUSTER.append(cluster)  # removed by pytest_sessionfinish
        cluster.init()
    return _CLUSTER[0]


@pytest.fixture
def make_server():
    """The Server class, for a test that needs its own (basic-auth) server."""
    return Server
