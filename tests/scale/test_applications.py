"""Large models no one here wrote (keras.applications, weights=None), audited by a short
real fit through `benchmarks/scale.py`. CI runs them at 32x32 with a 64-sample probe;
the 224x224 figures come from the benchmark itself (README, Performance)."""

import importlib.util
from pathlib import Path

import pytest

import regaudit

pytestmark = pytest.mark.scale

SCALE = Path(__file__).parents[2] / "benchmarks" / "scale.py"
#: MLflow metric keys a run may hold: up to 7 per-layer headline measures on at most
#: max_metric_layers (32) layers, plus the model-wide ones
MAX_KEYS = 7 * 32 + 16


def load_benchmark():
    spec = importlib.util.spec_from_file_location("regaudit_scale_benchmark", SCALE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["ResNet50", "MobileNetV2", "DenseNet121"])
def test_a_large_application_model_is_audited_whole_within_bounds(name):
    result = load_benchmark().audit_application(name, size=32, probe_size=64)
    print(result)  # the figures, for the log
    runs = regaudit.load_run(result["run_id"])
    measured = set(runs.activations.layer) - {"model"}
    assert result["measured_layers"] == result["layers"] - 1  # every layer but the Input
    assert len(measured) == result["measured_layers"]
    assert sorted(runs.activations.epoch.unique()) == [0, 1]  # before training, after it
    assert result["peak_added_mb"] < 2048
    assert result["metric_keys"] <= MAX_KEYS
    assert result["per_layer_metric_layers"] == 32
    # the Parquet table holds every measure of every layer, not only the metric layers
    assert runs.activations.query("measure == 'std' and epoch == 1").layer.nunique() == len(measured)
