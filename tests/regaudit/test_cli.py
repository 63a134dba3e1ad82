"""The `regaudit` command: starts without TensorFlow, and its demo logs a real audit."""

import subprocess
import sys

from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from regaudit import __version__
from regaudit.cli import cli

PROBE = """
import sys
from regaudit.cli import main
sys.argv = ["regaudit", {flag!r}]
try:
    main()
except SystemExit as exit:
    code = exit.code
heavy = sorted({{m.split(".")[0] for m in sys.modules}} & {{"tensorflow", "keras", "mlflow"}})
print("CODE", code, "HEAVY", heavy)
"""


def test_version_and_help_do_not_import_tensorflow():
    for flag in ("--version", "--help"):
        result = subprocess.run([sys.executable, "-c", PROBE.format(flag=flag)],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip().endswith("CODE 0 HEAVY []"), result.stdout
    result = subprocess.run([sys.executable, "-m", "regaudit", "--version"],
                            capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == f"regaudit, version {__version__}"


def test_a_bad_option_is_one_line_on_stderr_and_exit_2():
    result = subprocess.run([sys.executable, "-m", "regaudit", "demo", "--epochs", "0"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "Invalid value for '--epochs'" in result.stderr


def test_demo_trains_the_four_setups_and_writes_the_comparative_report(mlflow_store, tmp_path):
    output = tmp_path / "demo.html"
    result = CliRunner().invoke(cli, ["--tracking-uri", mlflow_store, "demo", "--epochs", "1",
                                      "--seeds", "1", "-o", str(output)],
                                env={"MLFLOW_TRACKING_URI": mlflow_store})
    assert result.exit_code == 0, result.output
    assert "trained 4 runs" in result.output
    assert f"report: {output}" in result.output and output.exists()
    report_run = result.output.split("also in MLflow run ")[1].split(",")[0]
    client = MlflowClient(mlflow_store)
    compared = client.get_run(report_run).data.tags["regaudit.report_of"].split(",")
    setups = sorted(client.get_run(run_id).data.tags["regaudit.setup"] for run_id in compared)
    assert setups == ["batchnorm", "dropout", "dropout+batchnorm", "none"]
    for run_id in compared:  # each run holds its own report too
        assert "regaudit/report/report.html" in [a.path for a in client.list_artifacts(run_id, "regaudit/report")]
    assert "open it in the MLflow UI" not in result.output  # the demo says "browse it"
    assert f"#/experiments/{client.get_run(report_run).info.experiment_id}/runs/{report_run}/artifacts" in result.output
    for claim in ("RA251", "RA252", "RA253", "RA254", "RA255", "RA256", "RA257"):
        assert f"[{claim}] Claim" in result.output
    both = next(r for r in compared if client.get_run(r).data.tags["regaudit.setup"] == "dropout+batchnorm")
    assert "regaudit/conv2d/mean" in client.get_run(both).data.metrics
    text = output.read_text()
    for setup in setups:
        assert f"&#39;{setup}&#39;" in text or setup in text
