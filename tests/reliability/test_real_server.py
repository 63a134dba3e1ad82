"""A real `mlflow server`: stopped and restarted while a fit runs, and a fit killed with
SIGKILL; every audit row must reach MLflow exactly once."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from regaudit.cli import cli
from regaudit.tracking.spool import spooled_run_ids
from regaudit.tracking.artifacts import download_tables

KEYS = ["epoch", "probe", "layer", "measure"]


def tiny_model():
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((12,)),
        keras.layers.Dense(16, activation="relu", name="dense"),
        keras.layers.Dropout(0.3, name="drop"),
        keras.layers.BatchNormalization(name="bn"),
        keras.layers.Dense(3, activation="softmax", name="out"),
    ])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def assert_every_audit_once(run_id, epochs):
    tables = download_tables(run_id, MlflowClient())
    for name in ("activations", "shift", "ensemble", "history"):
        table = tables[name]
        counts = table.groupby(KEYS).size()
        assert counts.max() == 1, (name, counts[counts > 1].head())
    acts = tables["activations"]
    assert sorted(set(acts.epoch)) == list(epochs)
    per_epoch = acts.groupby("epoch").size()
    # every audit holds the same rows (audit_seconds included): none lost
    assert per_epoch.nunique() == 1, per_epoch
    history = MlflowClient().get_metric_history(run_id, "regaudit/dense/mean")
    assert sorted(m.step for m in history) == list(epochs)
    return tables


BACKENDS = pytest.mark.parametrize("server", ["sqlite", "postgresql"], indirect=True)


@BACKENDS
def test_server_stopped_after_epoch_1_and_restarted_at_epoch_3_loses_nothing(server, spool_dir, rng):
    import keras

    from regaudit import RegAudit

    class Outage(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch + 1 == 1:
                server.stop()
            elif epoch + 1 == 3:
                server.start()

    x = rng.normal(size=(96, 12)).astype("float32")
    y = rng.integers(0, 3, 96)
    audit = RegAudit(probe_size=32, mc_samples=4, write_timeout=2, report=False)
    started = time.perf_counter()
    with pytest.warns(Warning, match="kept in the local spool"):
        tiny_model().fit(x, y, validation_split=0.25, epochs=5, batch_size=16, verbose=0,
                         callbacks=[Outage(), audit])
    elapsed = time.perf_counter() - started
    assert audit.run.writer.spooled > 0  # the outage was real
    assert spooled_run_ids() == []  # and everything was replayed by train end
    tables = assert_every_audit_once(audit.run_id, range(6))
    assert len(tables["activations"]) == 6 * len(tables["activations"][tables["activations"].epoch == 0])
    # the audits during the outage waited at most write_timeout each (plus the restart)
    assert elapsed < 120


SCRIPT = textwrap.dedent("""
    import os, sys, time
    import numpy as np
    import keras
    sys.path.insert(0, {tests!r})
    from test_real_server import tiny_model
    from regaudit import RegAudit

    folder = {folder!r}

    def wait_for(name):
        while not os.path.exists(os.path.join(folder, name)):
            time.sleep(0.1)

    class Steer(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            open(os.path.join(folder, f"done-{{epoch + 1}}"), "w").close()
            if epoch + 1 == 1:
                wait_for("stopped")
        def on_train_batch_begin(self, batch, logs=None):
            if self.epoch == 3 and batch == 2:  # mid-epoch 4
                open(os.path.join(folder, "in-epoch-4"), "w").close()
                time.sleep(600)
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 12)).astype("float32")
    y = rng.integers(0, 3, 96)
    audit = RegAudit(probe_size=32, mc_samples=4, write_timeout=2, report=False)
    class Announce(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 0:
                open(os.path.join(folder, "run_id"), "w").write(audit.run_id)
    tiny_model().fit(x, y, validation_split=0.25, epochs=6, batch_size=16, verbose=0,
                     callbacks=[audit, Announce(), Steer()])
""")


def wait_for(path, process, timeout=180):
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            raise AssertionError(f"the training process ended early ({process.returncode})")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {path.name} within {timeout} s")
        time.sleep(0.1)


def test_a_fit_killed_mid_epoch_keeps_every_audit_and_sync_finishes_the_job(server, spool_dir, tmp_path):
    folder = tmp_path / "steer"
    folder.mkdir()
    script = tmp_path / "train.py"
    script.write_text(SCRIPT.format(tests=os.path.dirname(__file__), folder=str(folder)))
    process = subprocess.Popen([sys.executable, str(script)], env=dict(os.environ),
                               stdout=subprocess.DEVNULL, stderr=open(tmp_path / "train.log", "wb"),
                               start_new_session=True)
    try:
        wait_for(folder / "done-1", process)
        server.stop()
        (folder / "stopped").touch()
        wait_for(folder / "in-epoch-4", process)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    run_id = (folder / "run_id").read_text()
    assert spooled_run_ids() == [run_id]  # epochs 2 and 3 wait in the spool
    server.start()
    result = CliRunner().invoke(cli, ["sync"], env={"MLFLOW_TRACKING_URI": server.uri})
    assert result.exit_code == 0, result.output
    assert f"run {run_id}:" in result.output and ", 0 left" in result.output
    assert spooled_run_ids() == []
    assert_every_audit_once(run_id, range(4))  # the audit before training and epochs 1-3


@pytest.mark.parametrize("server,active_run", [("sqlite", False), ("sqlite", True), ("postgresql", False),
                                               ("postgresql", True)],
                         ids=["sqlite-no run yet", "sqlite-active run", "postgresql-no run yet",
                              "postgresql-active run"],
                         indirect=["server"])
def test_server_away_before_fit_loses_nothing_and_sync_creates_the_run(server, spool_dir, rng, active_run):
    """The tracking server is stopped before `fit`: with no active run regaudit spools the
    run's creation with everything else and `regaudit sync` creates it and prints its id;
    with an active run, everything lands in that run. Every audit of every epoch is then
    in the run exactly once, in every table and in the metric history."""
    import mlflow

    from regaudit import RegAudit

    x = rng.normal(size=(64, 12)).astype("float32")
    y = rng.integers(0, 3, 64)
    if active_run:
        mlflow.set_experiment("outage")
        opened = mlflow.start_run(run_name="opened-before").info.run_id
    server.stop()
    # a pending run asks for its train-end report: `regaudit sync` logs it once it exists
    audit = RegAudit(probe_size=16, mc_samples=4, write_timeout=1, report=not active_run)
    with pytest.warns(Warning) as caught:
        tiny_model().fit(x, y, validation_split=0.25, epochs=2, batch_size=16, verbose=0,
                         callbacks=[audit])
    messages = " ".join(str(w.message) for w in caught)
    assert "switched off" not in messages
    if active_run:
        assert audit.run_id == opened
    else:
        assert audit.run_id.startswith("pending-") and "regaudit sync" in messages
    assert spooled_run_ids() == [audit.run_id]
    server.start()
    if active_run:
        mlflow.end_run()  # the user's own run: ended once its server is back
    result = CliRunner().invoke(cli, ["sync"], env={"MLFLOW_TRACKING_URI": server.uri})
    assert result.exit_code == 0, result.output
    assert ", 0 left" in result.output and spooled_run_ids() == []
    if active_run:
        run_id = opened
    else:
        run_id = result.output.split("into the new MLflow run ")[1].split(",")[0]
        run = MlflowClient().get_run(run_id)
        assert run.info.status == "FINISHED" and run.data.tags["regaudit.setup"] == "dropout+batchnorm"
        assert "its train-end report, logged now" in result.output
        assert "regaudit/report/report.html" in [a.path for a in MlflowClient().list_artifacts(run_id, "regaudit/report")]
        assert {m.step for m in MlflowClient().get_metric_history(run_id, "val_loss")} == {1, 2}
    assert_every_audit_once(run_id, range(3))
    again = CliRunner().invoke(cli, ["sync"], env={"MLFLOW_TRACKING_URI": server.uri})
    assert "nothing to sync" in again.output  # replayed once, never twice


def test_credentials_in_the_tracking_uri_never_reach_a_warning_or_the_spool(spool_dir, rng, monkeypatch):
    from regaudit import RegAudit

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://alice:s3cr3t-pw@127.0.0.1:9")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    x = rng.normal(size=(32, 12)).astype("float32")
    with pytest.warns(Warning) as caught:
        tiny_model().fit(x, rng.integers(0, 3, 32), epochs=1, batch_size=16, verbose=0,
                         callbacks=[RegAudit(probe_size=8, mc_samples=2, write_timeout=1, report=False)])
    assert caught and all("s3cr3t" not in str(w.message) for w in caught)
    for folder, _, files in os.walk(spool_dir):
        for name in files:
            assert b"s3cr3t" not in open(os.path.join(folder, name), "rb").read(), name
    result = CliRunner().invoke(cli, ["sync"], env={"MLFLOW_TRACKING_URI": "http://alice:s3cr3t-pw@127.0.0.1:9"})
    assert result.exit_code == 1 and "s3cr3t" not in result.output + result.stderr


@pytest.mark.parametrize("server", ["postgresql"], indirect=True)
def test_the_database_restarted_mid_fit_loses_nothing(server, spool_dir, rng):
    """The PostgreSQL database behind the server goes away after epoch 1 and comes back at
    epoch 3 (the server keeps running): every audit is in the run exactly once."""
    import keras

    from regaudit import RegAudit

    class DatabaseOutage(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch + 1 == 1:
                server.database.stop()
            elif epoch + 1 == 3:
                server.database.start()

    x = rng.normal(size=(96, 12)).astype("float32")
    y = rng.integers(0, 3, 96)
    audit = RegAudit(probe_size=32, mc_samples=4, write_timeout=3, report=False)
    tiny_model().fit(x, y, validation_split=0.25, epochs=5, batch_size=16, verbose=0,
                     callbacks=[DatabaseOutage(), audit])
    assert audit.run.writer.spooled > 0 and spooled_run_ids() == []
    assert_every_audit_once(audit.run_id, range(6))


def test_basic_auth_with_wrong_credentials_spools_and_sync_sends_with_the_right_ones(tmp_path, spool_dir, rng,
                                                                                      monkeypatch, make_server):
    """`mlflow server --app-name basic-auth`, credentials from MLFLOW_TRACKING_USERNAME /
    PASSWORD: wrong ones are one warning naming the cause, the audit spools, nothing
    crashes, and the password is in no warning and no spool file; with the right ones
    `regaudit sync` creates the run and sends every audit once."""
    import warnings as _warnings

    pytest.importorskip("flask_wtf", reason="the basic-auth app needs Flask-WTF (the test extra)")
    from regaudit import RegAudit

    folder = tmp_path / "auth"
    folder.mkdir()
    server = make_server(folder, app_name="basic-auth", env={"MLFLOW_AUTH_ADMIN_PASSWORD": "correct-horse-9",
                                                           "MLFLOW_FLASK_SERVER_SECRET_KEY": "test-only-key"})
    server.start()
    try:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", server.uri)
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "wrong-battery-7")
        x, y = rng.normal(size=(48, 12)).astype("float32"), rng.integers(0, 3, 48)
        audit = RegAudit(probe_size=16, mc_samples=2, write_timeout=3, report=False)
        with _warnings.catch_warnings(record=True) as caught:
            _warnings.simplefilter("always")
            tiny_model().fit(x, y, validation_split=0.25, epochs=1, verbose=0, callbacks=[audit])
        messages = [str(w.message) for w in caught if "regaudit" in str(w.message)]
        created = [m for m in messages if "no MLflow run could be created" in m]
        assert len(created) == 1 and ("401" in created[0] or "UNAUTHENTICATED" in created[0]
                                      or "nauthorized" in created[0]), messages
        assert not any("wrong-battery-7" in m for m in messages)
        for place, _, files in os.walk(spool_dir):
            for name in files:
                assert b"wrong-battery-7" not in open(os.path.join(place, name), "rb").read()
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "correct-horse-9")
        result = CliRunner().invoke(cli, ["sync"], env={"MLFLOW_TRACKING_URI": server.uri})
        assert result.exit_code == 0, result.output
        run_id = result.output.split("into the new MLflow run ")[1].split(",")[0]
        assert_every_audit_once(run_id, range(2))
    finally:
        server.stop()
