"""`regaudit study` on JAX and on PyTorch, as a user without TensorFlow runs it: the CLI in
a subprocess with `KERAS_BACKEND` set, Ray started locally (its workers inherit the
backend and the hidden TensorFlow), every trial an audited MLflow run of its variant in a
SQLite store, recorded as run on that backend."""

import json
import os
import subprocess
import sys

import mlflow
import pytest

from backend_runs import backend_env

pytest.importorskip("ray", reason="regaudit study needs Ray Tune: pip install 'regaudit[study]'")

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "study"))
from test_study import write_user_code  # noqa: E402 - the study tests' user code: data(), model()


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_a_study_trains_and_audits_each_variant_on_the_backend(backend, tmp_path):
    write_user_code(tmp_path)
    (tmp_path / "design.json").write_text(json.dumps({"factors": {"dropout": [0.0], "bn": ["after"]}}))
    store = f"sqlite:///{tmp_path}/mlflow.db"
    env = backend_env(backend, block_tensorflow=True, MLFLOW_TRACKING_URI=store, RAY_DEDUP_LOGS="0")
    done = subprocess.run([sys.executable, "-m", "regaudit", "study", "usercode:model", "--data", "usercode:data",
                           "--design", "design.json", "--seeds", "1", "--max-seeds", "1", "--epochs", "1"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 runs in experiment 'regaudit-study' (2 trained now)" in done.stdout, done.stdout
    client = mlflow.MlflowClient(store)
    experiment = client.get_experiment_by_name("regaudit-study")
    runs = client.search_runs([experiment.experiment_id], "tags.`regaudit.variant` != ''")
    assert sorted(r.data.tags["regaudit.variant"] for r in runs) == ["as given", "dropout=0,bn=after"]
    for run in runs:
        assert run.info.status == "FINISHED"
        meta = json.load(open(client.download_artifacts(run.info.run_id, "regaudit/meta.json", str(tmp_path))))
        assert meta["backend"] == backend, meta
        tags, metrics = run.data.tags, run.data.metrics
        if tags["regaudit.variant"] == "as given":
            assert "regaudit/model/disagreement" in metrics and "regaudit/dropout/drop_frac_measured" in metrics
        else:  # the variant's model: no Dropout, BN after the hidden layer's activation
            assert (tags["regaudit.dropout_layers"], tags["regaudit.batchnorm_layers"]) == ("0", "1")
            assert any(name.endswith("/bn_var_ratio") for name in metrics), sorted(metrics)
        assert "val_accuracy" in metrics
