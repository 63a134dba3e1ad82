"""The Keras-side tests of `backend_runs.REPEATED` again, on torch (a file per backend, so
the two run on different pytest-xdist workers)."""

from backend_runs import run_suite


def test_repeated_keras_side_tests_pass_on_torch():
    assert " passed" in run_suite("torch")
