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


def test_demo_trains_and_logs_an_audited_run(mlflow_store):
    result = CliRunner().invoke(cli, ["--tracking-uri", mlflow_store, "demo", "--epochs", "1"])
    assert result.exit_code == 0, result.output
    run_id = result.output.split("run id ")[1].split(";")[0].split()[0]
    run = MlflowClient(mlflow_store).get_run(run_id)
    assert run.data.tags["regaudit.setup"] == "dropout+batchnorm"
    assert "regaudit/conv2d/mean" in run.data.metrics
    assert run.data.metrics["val_accuracy"] > 0.2  # real digits, one epoch: well above chance
    assert "mlflow ui --backend-store-uri" in result.output


def test_the_core_imports_and_reads_without_tensorflow():
    script = (
        "import sys\n"
        "sys.modules['tensorflow'] = None\n"  # any import of TensorFlow now fails
        "sys.modules['keras'] = None\n"
        "import regaudit, regaudit.storage, regaudit.activations, regaudit.setup\n"
        "import regaudit.reports, regaudit.cli\n"
        "print('OK')\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "OK", result.stderr
