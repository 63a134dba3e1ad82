"""The `regaudit` command: starts without TensorFlow, says a bad option in one line (the
demo, a study on Ray, is tested with the other studies in tests/study)."""

import subprocess
import sys

import pytest

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


def test_an_error_line_is_one_redacted_line_and_a_usage_error_is_a_value_error():
    from regaudit.callbacks.audit.schedule import Every
    from regaudit.errors import UsageError, error_line

    line = error_line(RuntimeError("cannot reach http://alice:s3cret@host:5000/api\nTraceback (most recent call last)"))
    assert "\n" not in line and "s3cret" not in line and line.startswith("cannot reach http://")
    assert error_line(RuntimeError("x" * 500)) == "x" * 200
    assert error_line(RuntimeError()) == "" and error_line(RuntimeError("  ")) == ""
    with pytest.raises(ValueError, match="expects a positive int"):  # scikit-learn's convention
        Every(epochs=0)
    assert issubclass(UsageError, ValueError)


@pytest.mark.parametrize("width", range(12, 120, 7))
def test_a_finding_cut_to_one_line_keeps_every_word_and_number_whole(width):
    from regaudit.answer.finding import one_line

    text = ("Final val_accuracy by group, mean over runs: 'as given' 0.3278 (n = 1); "
            "'dropout=0,bn=none' 0.9253 (n = 1); difference 0.0123456 at layer dense_2, "
            "batch_normalization_1 and max_pooling2d.")
    cut = one_line(text, width)
    assert len(cut) <= width and cut.endswith(" ...")
    words, whole = cut[:-4].split(), text.split()
    assert words[:-1] == whole[:len(words) - 1]  # a prefix of whole words,
    assert words[-1] == whole[len(words) - 1].rstrip(",;:(")  # the last without its comma
    assert one_line("short, whole", width) == "short, whole"
