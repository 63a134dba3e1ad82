"""Writes the store refuses for good are set aside, not retried; a spool that is full or
cannot be written is one warning, and training goes on."""

import os
import warnings

import keras
import mlflow
import pytest
from mlflow.tracking import MlflowClient

from regaudit import RegAudit
from regaudit.tracking.spool import Spool, spooled_run_ids
from regaudit.tracking.writer import RunWriter
from regaudit.tracking.reach import Refused


def tiny():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5, activation="relu", name="dense"),
                              keras.layers.Dropout(0.2), keras.layers.Dense(2, activation="softmax", name="out")])
    model.compile("adam", "sparse_categorical_crossentropy")
    return model


def test_a_deleted_run_refuses_for_good_and_its_writes_are_set_aside_once(spool_dir):
    client = MlflowClient()
    run = client.create_run(client.get_experiment_by_name("Default").experiment_id).info.run_id
    writer = RunWriter(run)
    writer.begin(5)
    writer.log_metrics({"before": 1.0}, 0)
    client.delete_run(run)
    writer.begin(5)
    writer.log_metrics({"after": 2.0}, 1)
    writer.set_tags({"t": "v"})
    assert writer.refused == 2 and writer.spooled == 0 and "deleted" in writer.last_refusal
    assert spooled_run_ids() == []  # nothing waits in front of later writes
    aside = Spool(run, root=os.path.join(str(spool_dir), "refused")).pending()
    assert [e["kind"] for e in aside] == ["metrics", "tags"]
    assert "deleted" in aside[0]["payload"]["reason"]
    # a spooled entry refused at replay is set aside too, and the replay goes on behind it
    other = client.create_run(client.get_experiment_by_name("Default").experiment_id).info.run_id
    spool = Spool(other)
    spool.add("tags", {"x" * 300: "key too long"})  # MLflow: INVALID_PARAMETER_VALUE
    spool.add("tags", {"ok": "1"})
    replayer = RunWriter(other)
    assert replayer.begin(10) == (2, 0)
    assert replayer.refused == 1 and client.get_run(other).data.tags["ok"] == "1"
    assert isinstance(Refused("x"), Exception)


def test_a_run_deleted_mid_fit_is_one_warning_and_training_goes_on(spool_dir, rng):
    class DeleteAfterEpoch1(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                MlflowClient().delete_run(audit.run_id)

    audit = RegAudit(probe_size=8, mc_samples=2, write_timeout=5, report=False)
    x, y = rng.normal(size=(40, 6)).astype("float32"), rng.integers(0, 2, 40)
    mlflow.start_run()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = tiny().fit(x, y, validation_split=0.25, epochs=3, verbose=0,
                             callbacks=[DeleteAfterEpoch1(), audit])
    with pytest.raises(Exception, match="deleted"):
        mlflow.end_run()  # MLflow's own end_run refuses a deleted run too
    mlflow.tracking.fluent._active_run_stack.get().clear()
    refusals = [w for w in caught if "refused" in str(w.message)]
    assert len(refusals) == 1 and "for good" in str(refusals[0].message)
    assert "switched off" not in " ".join(str(w.message) for w in caught)
    assert len(history.history["loss"]) == 3 and spooled_run_ids() == []


def test_a_full_or_unwritable_spool_is_one_warning_and_training_goes_on(tmp_path, rng, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # nobody there
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    x, y = rng.normal(size=(40, 6)).astype("float32"), rng.integers(0, 2, 40)
    for case in ("full", "unwritable"):
        if case == "full":
            monkeypatch.setenv("REGAUDIT_SPOOL_DIR", str(tmp_path / "small"))
            monkeypatch.setenv("REGAUDIT_SPOOL_MAX_MB", "0.02")  # 20 KB
        else:
            blocker = tmp_path / "a-file"
            blocker.write_text("not a folder")
            monkeypatch.setenv("REGAUDIT_SPOOL_DIR", str(blocker / "spool"))
            monkeypatch.delenv("REGAUDIT_SPOOL_MAX_MB")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            history = tiny().fit(x, y, validation_split=0.25, epochs=2, verbose=0,
                                 callbacks=[RegAudit(probe_size=8, mc_samples=2, write_timeout=1,
                                                     report=False)])
        messages = [str(w.message) for w in caught if "regaudit" in str(w.message)]
        assert len(history.history["loss"]) == 2
        lost = [m for m in messages if "cannot keep audit writes" in m]
        assert len(lost) == 1, messages
        if case == "full":
            assert any("full (REGAUDIT_SPOOL_MAX_MB)" in m for m in messages)
            assert "reached its bound" in lost[0]
        assert "switched off" not in " ".join(messages)
