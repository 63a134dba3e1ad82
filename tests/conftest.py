"""Shared test fixtures: a real temporary MLflow store, a seeded rng, tiny models."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# the train-end report renders in a thread after every fit; tests that check it ask for it
os.environ["REGAUDIT_REPORT"] = "0"

import numpy as np
import pytest


@pytest.fixture(scope="session", autouse=True)
def mlflow_store(tmp_path_factory):
    """Every test logs to one real SQLite store in a temporary folder (runs are told
    apart by run id), never to ./mlflow.db."""
    folder = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    yield uri
    if previous is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = previous


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(autouse=True)
def _clean_keras_and_plots():
    import sys

    # layers made while tests were collected (keras-hub's import makes some) would shift
    # Keras' automatic layer names (dropout -> dropout_1) in the first test
    if "keras" in sys.modules:
        sys.modules["keras"].backend.clear_session()
    yield
    import threading

    for thread in threading.enumerate():
        if thread.name.startswith("regaudit-report"):
            thread.join(timeout=120)

    if "keras" in sys.modules:
        sys.modules["keras"].backend.clear_session()
    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close("all")
    fits = sys.modules.get("regaudit.callbacks.audit.fits")
    if fits is not None:  # a fit a test made raise is not a fit the next test must end
        fits._AUDITING.clear()
    if "mlflow" in sys.modules:
        mlflow = sys.modules["mlflow"]
        while mlflow.active_run() is not None:
            mlflow.end_run()
        # mlflow.set_experiment (the demo, the report study) sets a process-wide active
        # experiment and MLFLOW_EXPERIMENT_ID, which would follow the next test to another
        # store (a real server, a subprocess)
        sys.modules["mlflow.tracking.fluent"]._active_experiment_id = None
        os.environ.pop("MLFLOW_EXPERIMENT_ID", None)
