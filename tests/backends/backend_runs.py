"""Run the Keras-side scripts once per backend: each backend in its own subprocess
(`KERAS_BACKEND` is read once, when Keras is imported)."""

import importlib.util
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
BACKENDS = ("tensorflow", "jax", "torch")
_MODULE = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}


def installed(backend):
    return importlib.util.find_spec(_MODULE[backend]) is not None


def run_script(backend, script, *args, timeout=900, block_tensorflow=False, cwd=None):
    """Run `script` of this folder with `KERAS_BACKEND=backend`; its output on failure.
    `block_tensorflow`: the process behaves as if TensorFlow were not installed."""
    if not installed(backend):
        pytest.skip(f"{backend} is not installed here (pip install 'regaudit[{backend}]')")
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=HERE + os.pathsep + os.environ.get("PYTHONPATH", ""))
    # every default on, as a user runs it (the suite's conftest switches the report off)
    for name in ("REGAUDIT_REPORT", "MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID"):
        env.pop(name, None)
    command = [sys.executable]
    if block_tensorflow:
        command += [os.path.join(HERE, "without_tensorflow.py")]
    command.append(os.path.join(HERE, script))
    done = subprocess.run(command + list(args), env=env, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    assert done.returncode == 0, f"{backend}: {script} {args} exited {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    return done
