"""Large models no one here wrote (keras.applications, weights=None), audited by a short
real fit through `benchmarks/scale.py`. CI runs them at 32x32 with a 64-sample probe;
the 224x224 figures come from the benchmark itself (README, Performance)."""

import importlib.util
import time
from pathlib import Path

import pytest

import regaudit
from regaudit.reports import plots
from regaudit.reports.report import build_report, run_labels

pytestmark = pytest.mark.scale

SCALE = Path(__file__).parents[2] / "benchmarks" / "scale.py"
#: MLflow metric keys a run may hold: at most 8 per-layer headline measures on at most
#: max_metric_layers (32) layers (these models have no Dropout), plus at most 10
#: model-wide ones for their one output
MAX_KEYS = 8 * 32 + 10


def load_benchmark():
    spec = importlib.util.spec_from_file_location("regaudit_scale_benchmark", SCALE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: audited runs, shared with the report test (an audit of ResNet50 costs half a minute)
_AUDITED = {}


# DenseNet121 (428 layers) is in benchmarks/scale.py and the README's figures; CI keeps to
# two models so the whole test run stays under its time budget
@pytest.mark.parametrize("name", ["ResNet50", "MobileNetV2"])
def test_a_large_application_model_is_audited_whole_within_bounds(name):
    result = load_benchmark().audit_application(name, size=32, probe_size=64)
    _AUDITED[name] = result
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


def test_a_large_model_report_shows_a_bounded_number_of_layer_panels(tmp_path):
    result = _AUDITED.get("ResNet50") or load_benchmark().audit_application(
        "ResNet50", size=32, probe_size=16, steps=1)
    runs = regaudit.load_run(result["run_id"])
    groups, labels = runs.group("regaudit.setup"), run_labels(runs)
    for function in (plots.percentile_bands, plots.drift_per_layer):
        figure = function(runs, labels, groups)
        panels = [ax for ax in figure.axes if ax.get_visible()]
        assert 2 <= len(panels) <= plots.MAX_LAYER_PANELS
        assert "of 176 layers" in figure._suptitle.get_text()
        titles = [ax.get_title() for ax in panels]
        assert titles[0] == "layer conv1_pad" and titles[-1] == "layer predictions"  # both ends kept
    started = time.perf_counter()
    made = build_report(runs, str(tmp_path / "resnet50.html"))
    print(f"ResNet50 report: {time.perf_counter() - started:.1f} s")
    assert (tmp_path / "resnet50.html").stat().st_size > 10_000
    assert len(made.images) >= 4
