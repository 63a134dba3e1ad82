"""Run the Keras-side scripts once per backend: each backend in its own subprocess
(`KERAS_BACKEND` is read once, when Keras is imported)."""

import importlib.util
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
#: on `PYTHONPATH`, its `sitecustomize` hides TensorFlow from the process and its children
TENSORFLOW_HIDDEN = os.path.join(HERE, "tensorflow_hidden")
BACKENDS = ("tensorflow", "jax", "torch")
_MODULE = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}


def installed(backend):
    return importlib.util.find_spec(_MODULE[backend]) is not None


def backend_env(backend, block_tensorflow=False, **extra):
    """The environment of a process on `backend`, every default on as a user runs it (the
    suite's conftest switches the report off), no MLflow store chosen unless in `extra`.
    `block_tensorflow`: the process and its children (Ray's workers) run as if TensorFlow
    were not installed."""
    if not installed(backend):
        pytest.skip(f"{backend} is not installed here (pip install 'regaudit[{backend}]')")
    paths = ([TENSORFLOW_HIDDEN] if block_tensorflow else []) + [HERE, os.environ.get("PYTHONPATH", "")]
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=os.pathsep.join(paths))
    for name in ("REGAUDIT_REPORT", "MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID"):
        env.pop(name, None)
    env.update(extra)
    return env


def run_script(backend, script, *args, timeout=900, block_tensorflow=False, cwd=None):
    """Run `script` of this folder with `KERAS_BACKEND=backend` (`backend_env`); its
    output on failure."""
    env = backend_env(backend, block_tensorflow)
    command = [sys.executable, os.path.join(HERE, script)]
    done = subprocess.run(command + list(args), env=env, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    assert done.returncode == 0, f"{backend}: {script} {args} exited {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    return done


#: the Keras-side test files that run again on JAX and on PyTorch (the whole suite runs on
#: TensorFlow): the audit's invariants (nothing of the model, its optimizer or its seed
#: state moves; bit-identical fits) and the Monte-Carlo ensemble over every noise source
#: (custom layers, attention, RNN dropout). About 1.5 min on PyTorch, 2.5 on JAX.
REPEATED = ("tests/callbacks/test_invariants.py", "tests/callbacks/test_dropout_ensemble.py")


def run_suite(backend):
    """`REPEATED` under pytest in a process of its own with `KERAS_BACKEND=backend`."""
    if not installed(backend):
        pytest.skip(f"{backend} is not installed here (pip install 'regaudit[{backend}]')")
    root = os.path.dirname(os.path.dirname(HERE))
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *REPEATED],
                          cwd=root, env=env, capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, f"{backend}:\n{done.stdout[-8000:]}\n{done.stderr[-2000:]}"
    return done.stdout.strip().splitlines()[-1]
