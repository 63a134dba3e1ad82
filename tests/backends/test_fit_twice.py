"""On each backend, the README's one-line callback with every default on: a `fit` with
`RegAudit()` ends bit-identical to one without it (weights, BatchNorm moving statistics,
optimizer slots, seed-generator states; each backend's determinism on), and the run has
its measures and its train-end report. On JAX and PyTorch the script runs as on a
machine without TensorFlow (`tensorflow_hidden/sitecustomize.py`)."""

import mlflow
import pytest

from backend_runs import BACKENDS, run_script


@pytest.mark.parametrize("backend", BACKENDS)
def test_fit_with_audit_is_bit_identical_and_logged(backend, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the store's artifacts are under ./mlruns
    done = run_script(backend, "fit_twice.py", str(tmp_path), cwd=tmp_path,
                      block_tensorflow=backend != "tensorflow")
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines() if " " in line)
    if backend != "tensorflow":
        assert lines["backend"] == f"{backend} tensorflow imported False"
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    metrics = run.data.metrics
    for name in ("regaudit/model/n_eff", "regaudit/model/disagreement",
                 "regaudit/batch_normalization_1/bn_var_ratio",
                 "regaudit/batch_normalization_1/bn_dropout_var_ratio",
                 "regaudit/block/dropout_3/drop_frac_measured", "regaudit/dense_3/tv_w1"):
        assert name in metrics, (name, sorted(metrics))
    assert 0.1 < metrics["regaudit/block/dropout_3/drop_frac_measured"] < 0.3
    report = [a.path for a in client.list_artifacts(run.info.run_id, "regaudit/report")]
    assert any(path.endswith(".html") for path in report), report
    assert run.data.tags["regaudit.report"] == "0" or report
