"""Fixtures of the Keras-side tests; the models and references live in model_zoo.py."""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(__file__))

import keras  # noqa: E402
import pytest  # noqa: E402

from model_zoo import MODEL_FACTORIES, compiled  # noqa: E402


@pytest.fixture
def tiny_model():
    """Factory: a compiled model by name (see MODEL_FACTORIES)."""

    def make(name):
        keras.utils.set_random_seed(0)
        return compiled(MODEL_FACTORIES[name]())

    return make


