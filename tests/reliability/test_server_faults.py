"""Faults against a real `mlflow server`, once SQLite-backed and once PostgreSQL-backed
(one server per backend for the module): a server that hangs mid-fit and through train
end, a spool at its bound or unwritable while it hangs, a run deleted mid-fit, Ctrl-C
(a real SIGINT) during an audit and during a training step, two callbacks, MLflow's own
Keras callback and autolog, and four trials starting at once. Each checks that every
audit that was made is in the run exactly once: rows lost 0, duplicated 0."""

import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings

import numpy as np
import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from regaudit.cli import cli
from regaudit.tracking.spool import Spool, spooled_run_ids
from regaudit.tracking.artifacts import download_tables
from test_real_server import assert_every_audit_once, tiny_model, wait_for


def fit(callbacks, rng, epochs=3, n=64):
    x = rng.normal(size=(n, 12)).astype("float32")
    y = rng.integers(0, 3, n)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = tiny_model().fit(x, y, validation_split=0.25, epochs=epochs, batch_size=16, verbose=0,
                                   callbacks=callbacks)
    return history, [str(w.message) for w in caught if "regaudit" in str(w.message)]


def sync(server):
    result = CliRunner().invoke(cli, ["sync"], env={"MLFLOW_TRACKING_URI": server.uri})
    assert result.exit_code == 0, result.output
    return result.output


def final_run_id(audit, sync_output=""):
    """The audit's run: a run still pending at train end (the first create was too slow on
    a loaded machine) is the one `regaudit sync` created."""
    if "into the new MLflow run " in sync_output:
        return sync_output.split("into the new MLflow run ")[1].split(",")[0]
    return audit.run_id


def test_a_server_hanging_from_epoch_1_through_train_end_loses_nothing(live_server, spool_dir, rng):
    """The server stops answering (SIGSTOP: connections are accepted, nothing answers)
    after the first epoch's audit and stays so through train end: each write waits at
    most write_timeout, the audits, Keras' history and the run's end wait in the spool,
    and `regaudit sync` sends each once; the requests left hanging then complete too and
    duplicate nothing."""
    import keras

    from regaudit import RegAudit

    class Hang(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                live_server.pause()

    audit = RegAudit(probe_size=16, mc_samples=2, write_timeout=2, report=True)
    started = time.perf_counter()
    history, messages = fit([audit, Hang()], rng)
    elapsed = time.perf_counter() - started
    live_server.resume()
    assert len(history.history["loss"]) == 3 and "switched off" not in " ".join(messages)
    assert any("kept in the local spool" in m for m in messages)
    assert any("report of run" in m and "waits until its spooled writes" in m for m in messages)
    assert audit.report_thread is None  # not rendered from a run without its audits
    # the spool's id: the run's, or the pending id it had when the first (1 s) create was
    # too slow, on a loaded machine, before a later audit created it
    assert spooled_run_ids() == [audit.run.writer.spool.run_id]
    assert elapsed < 60  # bounded waits, not MLflow's minutes of retries
    output = sync(live_server)
    assert f"run {audit.run.writer.spool.run_id}:" in output and ", 0 left" in output
    assert "its train-end report, logged now" in output
    time.sleep(1)  # the requests that hung have been answered by now
    run_id = final_run_id(audit, output)
    tables = assert_every_audit_once(run_id, range(4))
    assert sorted(tables["history"].epoch.unique()) == [1, 2, 3]
    run = MlflowClient().get_run(run_id)
    assert run.info.status == "FINISHED"
    assert sorted(m.step for m in MlflowClient().get_metric_history(run_id, "val_loss")) == [1, 2, 3]


def test_the_scripts_end_waits_for_a_report_at_most_exit_wait_when_the_server_hangs(live_server, rng,
                                                                                   monkeypatch, capsys):
    """The server stops answering while the train-end report renders: the interpreter's
    exit hook waits for it at most EXIT_WAIT seconds (not MLflow's minutes of retries) and
    says that `regaudit sync RUN` logs it later."""
    from regaudit import RegAudit
    from regaudit.callbacks.audit import train_end_report

    audit = RegAudit(probe_size=16, mc_samples=2, report=False)
    fit([audit], rng, epochs=1)
    monkeypatch.setattr(train_end_report, "EXIT_WAIT", 2.0)
    live_server.pause()
    thread = train_end_report.start_report(audit.run_id)
    started = time.perf_counter()
    train_end_report._wait_for_reports()
    waited = time.perf_counter() - started
    live_server.resume()
    assert 1.5 < waited < 10 and thread.is_alive()
    assert f"the train-end report of run {audit.run_id} did not finish" in capsys.readouterr().err
    thread.join(120)
    sync_output = CliRunner().invoke(cli, ["sync", audit.run_id],
                                     env={"MLFLOW_TRACKING_URI": live_server.uri}).output
    html = [a.path for a in MlflowClient().list_artifacts(audit.run_id, "regaudit/report")]
    assert "regaudit/report/report.html" in html, sync_output


def test_a_spool_at_its_bound_or_unwritable_while_the_server_hangs_is_one_warning(live_server, tmp_path,
                                                                                 rng, monkeypatch):
    """While the server hangs, a spool at its size bound, then a spool folder that cannot
    be made, is one warning naming how many writes were lost; training goes on, and what
    the spool kept is sent once by `regaudit sync`."""
    import keras

    from regaudit import RegAudit

    class Hang(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                live_server.pause()

    for case in ("bound", "unwritable"):
        if case == "bound":
            monkeypatch.setenv("REGAUDIT_SPOOL_DIR", str(tmp_path / "small"))
            monkeypatch.setenv("REGAUDIT_SPOOL_MAX_MB", "0.03")
        else:
            (tmp_path / "a-file").write_text("not a folder")
            monkeypatch.setenv("REGAUDIT_SPOOL_DIR", str(tmp_path / "a-file" / "spool"))
        audit = RegAudit(probe_size=16, mc_samples=2, write_timeout=2, report=False)
        history, messages = fit([audit, Hang()], rng)
        live_server.resume()
        assert len(history.history["loss"]) == 3 and "switched off" not in " ".join(messages)
        lost = [m for m in messages if "cannot keep audit writes" in m]
        assert len(lost) == 1, messages
        assert audit.run.writer.lost > 0 and "write(s) are lost" in lost[0]
        if case == "bound":
            assert "reached its bound" in lost[0]
            assert audit.run.writer.spooled > 0
            # train end says both: what waits in the spool, and every write lost in the fit
            at_end = [m for m in messages if "could not reach MLflow by train end" in m]
            assert len(at_end) == 1 and " other write(s) could not be kept" in at_end[0]
            output = sync(live_server)
            assert "refused" not in output
        acts = download_tables(final_run_id(audit, output if case == "bound" else ""))["activations"]
        assert acts.groupby(["epoch", "layer", "measure"]).size().max() == 1  # duplicated: 0
        assert 0 in set(acts.epoch) and 1 in set(acts.epoch)  # written before the hang


def test_a_run_deleted_mid_fit_is_set_aside_once_and_training_goes_on(live_server, spool_dir, rng):
    """The run is deleted in the store after epoch 1: the store refuses every later write
    for good (RESOURCE_DOES_NOT_EXIST or an invalid state): one warning with its reason,
    the writes kept aside in `<spool>/refused/` and not retried, training goes on."""
    import keras

    from regaudit import RegAudit

    class Delete(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                MlflowClient().delete_run(audit.run_id)

    audit = RegAudit(probe_size=16, mc_samples=2, write_timeout=5, report=False)
    history, messages = fit([audit, Delete()], rng)
    assert len(history.history["loss"]) == 3 and "switched off" not in " ".join(messages)
    refusals = [m for m in messages if "refused" in m]
    assert len(refusals) == 1 and "for good" in refusals[0], messages
    assert spooled_run_ids() == []  # nothing retried in front of later writes
    aside = Spool(audit.run_id, root=os.path.join(str(spool_dir), "refused")).pending()
    assert aside and all(entry["payload"]["reason"] for entry in aside)
    assert {entry["kind"] for entry in aside} >= {"metrics"}
    assert MlflowClient().get_run(audit.run_id).info.lifecycle_stage == "deleted"
    history = MlflowClient().get_metric_history(audit.run_id, "regaudit/dense/mean")
    assert sorted(m.step for m in history) == [0, 1]  # before the deletion: each once


def test_two_callbacks_mlflows_keras_callback_and_autolog_each_write_once(live_server, spool_dir, rng):
    import mlflow

    from regaudit import RegAudit
    from regaudit.callbacks import ActivationStats

    first, second = RegAudit(probe_size=16, mc_samples=2, report=False), ActivationStats(probe_size=16)
    _, messages = fit([first, second], rng, epochs=2)
    assert second.run_id is None and any("already audits this fit" in m for m in messages)
    assert_every_audit_once(first.run_id, range(3))
    with mlflow.start_run() as run:
        audit = RegAudit(probe_size=16, mc_samples=2, report=False)
        fit([mlflow.keras.MlflowCallback(run), audit], rng, epochs=2)
    assert audit.run_id == run.info.run_id
    assert len(MlflowClient().get_metric_history(run.info.run_id, "loss")) == 2
    assert_every_audit_once(run.info.run_id, range(3))
    mlflow.keras.autolog(log_models=False, log_datasets=False)
    try:
        audit = RegAudit(probe_size=16, mc_samples=2, report=False)
        fit([audit], rng, epochs=2)
    finally:
        mlflow.keras.autolog(disable=True)
    run = MlflowClient().get_run(audit.run_id)
    assert run.data.tags.get("regaudit.setup") and any(k.endswith("loss") for k in run.data.metrics)
    assert len(MlflowClient().get_metric_history(audit.run_id, "loss")) == 2  # autolog's, once
    assert_every_audit_once(audit.run_id, range(3))


INTERRUPTED = textwrap.dedent("""
    import faulthandler, os, signal, sys, time
    # Ctrl-C as a shell delivers it, whatever this test process's own SIGINT disposition
    # (a child inherits an ignored SIGINT); SIGUSR1 prints every thread's stack
    signal.signal(signal.SIGINT, signal.default_int_handler)
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    import numpy as np
    import keras
    sys.path.insert(0, {tests!r})
    from test_real_server import tiny_model
    from regaudit import RegAudit
    from regaudit.callbacks.families.activations import ActivationFamily

    folder, where = {folder!r}, {where!r}

    class Slow(ActivationFamily):
        def measure(self, context):
            if where == "audit" and context.epoch == 2:
                measured = super().measure(context)
                open(os.path.join(folder, "waiting"), "w").close()
                time.sleep(600)  # Ctrl-C arrives here, inside the audit
                return measured
            return super().measure(context)

    class Audit(RegAudit):
        family_types = (Slow,) + RegAudit.family_types[1:]

    class Steer(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                np.savez(os.path.join(folder, "before.npz"), *[np.array(v) for v in self.model.variables])
        def on_train_batch_begin(self, batch, logs=None):
            if where == "step" and self.epoch == 2 and batch == 1:
                open(os.path.join(folder, "waiting"), "w").close()
                time.sleep(600)  # Ctrl-C arrives here, in a training step
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 12)).astype("float32"), rng.integers(0, 3, 64)
    audit = Audit(probe_size=16, mc_samples=2, write_timeout=5, report=False)
    model = tiny_model()
    class Announce(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            open(os.path.join(folder, "run_id"), "w").write(audit.run_id)
    try:
        model.fit(x, y, validation_split=0.25, epochs=4, batch_size=16, verbose=0,
                  callbacks=[Steer(), audit, Announce()])
    finally:
        np.savez(os.path.join(folder, "after.npz"), *[np.array(v) for v in model.variables])
""")


@pytest.mark.parametrize("where", ["audit", "step"])
def test_ctrl_c_ends_the_run_killed_and_keeps_the_model_and_every_audit(live_server, spool_dir, tmp_path, where):
    """A real SIGINT to a training script, during the audit at the end of epoch 2 or during
    a training step of epoch 3: the script stops with KeyboardInterrupt, the model after the
    interrupted audit is bit-identical to the model before it, the run regaudit started is
    KILLED (not FINISHED by MLflow's exit hook), and the audits made are in it once."""
    folder = tmp_path / "steer"
    folder.mkdir()
    script = tmp_path / "train.py"
    script.write_text(INTERRUPTED.format(tests=os.path.dirname(__file__), folder=str(folder), where=where))
    log = open(tmp_path / "train.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen([sys.executable, str(script)], env=dict(os.environ), stdout=log, stderr=log)
    try:
        wait_for(folder / "waiting", process)
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGUSR1)  # where it hangs, into train.log
            time.sleep(3)
    finally:
        if process.poll() is None:
            process.kill()
        log.close()
    output = (tmp_path / "train.log").read_text()
    assert process.returncode not in (None, -signal.SIGKILL), \
        f"the script did not end within 120 s of Ctrl-C: {output[-6000:]}"
    assert process.returncode != 0 and "KeyboardInterrupt" in output, output[-2000:]
    run_id = (folder / "run_id").read_text()
    assert MlflowClient().get_run(run_id).info.status == "KILLED"
    if where == "audit":
        before, after = np.load(folder / "before.npz"), np.load(folder / "after.npz")
        for name in before.files:
            np.testing.assert_array_equal(before[name], after[name])
    assert spooled_run_ids() == []  # the spool is consistent: nothing half-written waits
    assert_every_audit_once(run_id, range(2 if where == "audit" else 3))


TRIAL = textwrap.dedent("""
    import sys
    import numpy as np
    import keras
    from regaudit import RegAudit
    keras.utils.set_random_seed(int(sys.argv[1]))
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(6, activation="relu", name="hidden"),
                              keras.layers.Dropout(0.2), keras.layers.Dense(3, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    rng = np.random.default_rng(int(sys.argv[1]))
    audit = RegAudit(report=False, probe_size=16, mc_samples=2)
    model.fit(rng.normal(size=(64, 8)).astype("float32"), rng.integers(0, 3, 64), epochs=1,
              batch_size=16, validation_split=0.25, callbacks=[audit], verbose=0)
    print("RUN", audit.run_id)
""")


def test_four_trials_starting_at_once_each_get_one_complete_run(live_server, spool_dir, tmp_path):
    """Four training processes start together against the server, in an experiment none
    of them has created yet (MLFLOW_EXPERIMENT_NAME, as a tuner sets it): every trial's
    audit ends up in a run of its own, every audit once."""
    script = tmp_path / "trial.py"
    script.write_text(TRIAL)
    experiment = f"trials-{tmp_path.name}"
    env = dict(os.environ, MLFLOW_EXPERIMENT_NAME=experiment)
    processes = [subprocess.Popen([sys.executable, str(script), str(seed)], env=env, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE) for seed in (1, 2, 3, 4)]
    outputs = [p.communicate(timeout=600) for p in processes]
    for process, (_, err) in zip(processes, outputs):
        assert process.returncode == 0, err[-2000:]
    synced = sync(live_server)
    run_ids = [out.split("RUN ")[1].split()[0] for out, _ in outputs]
    created = {line.split()[1].rstrip(":"): line.split("into the new MLflow run ")[1].split(",")[0]
               for line in synced.splitlines() if "into the new MLflow run" in line}
    run_ids = [created.get(r, r) for r in run_ids]
    assert len(set(run_ids)) == 4 and not any(r.startswith("pending-") for r in run_ids)
    experiment_id = MlflowClient().get_experiment_by_name(experiment).experiment_id
    for run_id in run_ids:
        assert MlflowClient().get_run(run_id).info.experiment_id == experiment_id
        acts = download_tables(run_id)["activations"]
        assert sorted(set(acts.epoch)) == [0, 1]
        assert acts.groupby(["epoch", "layer", "measure"]).size().max() == 1
