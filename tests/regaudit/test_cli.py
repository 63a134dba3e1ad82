"""The `regaudit` command: starts without TensorFlow, says a bad option in one line (the
demo, a study on Ray, is tested with the other studies in tests/study)."""

import subprocess
import sys

from regaudit import __version__

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
