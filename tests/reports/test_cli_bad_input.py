"""`regaudit report` on damaged, missing, future or unwritable things: one line on stderr,
exit 1, no traceback, nothing half-written."""

import json

import pandas as pd
import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from regaudit.cli import cli
from regaudit.schema import COLUMNS


def fake_run(tmp_path, name, parts=(), meta=None):
    """A run tagged as audited whose regaudit/ artifacts are what the test says."""
    client = MlflowClient()
    experiment = client.get_experiment_by_name("bad-input") or None
    experiment_id = experiment.experiment_id if experiment else client.create_experiment("bad-input")
    run = client.create_run(experiment_id, run_name=name, tags={"regaudit.version": "0.1.0"})
    folder = tmp_path / name
    folder.mkdir()
    for table, content in parts:
        path = folder / "audit-000000.parquet"
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            content.to_parquet(path, index=False)
        client.log_artifact(run.info.run_id, str(path), f"regaudit/{table}")
    if meta is not None:
        (folder / "meta.json").write_text(json.dumps(meta))
        client.log_artifact(run.info.run_id, str(folder / "meta.json"), "regaudit")
    return run.info.run_id


def good_rows(run_id):
    return pd.DataFrame([dict(zip(COLUMNS, (run_id, 1, 0, "val", "dense", "Dense", "mean", 0.5)))])


def run_report(mlflow_store, *args):
    return CliRunner().invoke(cli, ["report", *args], env={"MLFLOW_TRACKING_URI": mlflow_store})


def assert_one_line(result, fragment):
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("regaudit: ") and fragment in lines[0], result.stderr
    assert "Traceback" not in result.output


def test_a_corrupt_parquet_part(mlflow_store, tmp_path):
    run_id = fake_run(tmp_path, "corrupt", parts=[("activations", b"not parquet at all")])
    result = run_report(mlflow_store, run_id, "-o", str(tmp_path / "r.html"))
    assert_one_line(result, "regaudit/activations/audit-000000.parquet")
    assert "is damaged" in result.stderr and not (tmp_path / "r.html").exists()


def test_tables_missing(mlflow_store, tmp_path):
    run_id = fake_run(tmp_path, "missing", meta={"schema_version": 1})
    result = run_report(mlflow_store, run_id, "-o", str(tmp_path / "r.html"))
    assert_one_line(result, "has no regaudit data")


def test_a_schema_version_from_the_future(mlflow_store, tmp_path):
    client = MlflowClient()
    run_id = fake_run(tmp_path, "future", meta={"schema_version": 99})
    part = tmp_path / "audit-000000.parquet"
    good_rows(run_id).to_parquet(part, index=False)
    client.log_artifact(run_id, str(part), "regaudit/activations")
    result = run_report(mlflow_store, run_id, "-o", str(tmp_path / "r.html"))
    assert_one_line(result, "newer than this regaudit")


@pytest.mark.parametrize("fmt", ["html", "md"])
def test_an_unwritable_output_path_leaves_nothing_behind(mlflow_store, tmp_path, fmt):
    run_id = fake_run(tmp_path, f"fine-{fmt}", meta={"schema_version": 1})
    part = tmp_path / f"part-{fmt}.parquet"
    good_rows(run_id).to_parquet(part, index=False)
    MlflowClient().log_artifact(run_id, str(part), "regaudit/activations")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = run_report(mlflow_store, run_id, "--format", fmt, "-o", str(blocker / f"r.{fmt}"), "--no-log")
    assert_one_line(result, "cannot write the report")
    assert blocker.read_text() == "not a folder"
    assert sorted(p.name for p in tmp_path.iterdir() if "tmp" in p.name) == []
