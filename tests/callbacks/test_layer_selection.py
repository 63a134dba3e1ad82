"""`layers=`: names, regular expressions and layer classes choose what is measured;
`max_metric_layers` bounds the MLflow metric keys; the model always runs whole."""

import json

import keras
import mlflow
import numpy as np
import pytest

import regaudit
from regaudit import RegAudit, UsageError
from regaudit.callbacks.audit.selection import LayerSelection
from regaudit.schema import evenly_spaced


def small_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,))
    x = keras.layers.Dense(12, activation="relu", name="dense_a")(inputs)
    x = keras.layers.BatchNormalization(name="bn_a")(x)
    x = keras.layers.Dropout(0.3, name="drop")(x)
    x = keras.layers.Dense(12, activation="relu", name="dense_b")(x)
    x = keras.layers.BatchNormalization(name="bn_b")(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="out")(x)
    model = keras.Model(inputs, outputs)
    model.compile("adam", "sparse_categorical_crossentropy")
    return model


def fit(callback, rng, model=None):
    model = model or small_model()
    x = rng.normal(size=(64, 6)).astype("float32")
    y = rng.integers(0, 3, 64)
    model.fit(x, y, validation_split=0.25, epochs=1, batch_size=16, verbose=0, callbacks=[callback])
    return model


@pytest.mark.parametrize("spec, expected", [
    ("dense_.*", {"dense_a", "dense_b"}),
    ("out", {"out"}),
    (keras.layers.BatchNormalization, {"bn_a", "bn_b"}),
    ([keras.layers.Dropout, "dense_b"], {"drop", "dense_b"}),
])
def test_layers_selects_by_regex_name_and_class(spec, expected, rng):
    callback = RegAudit(layers=spec, report=False, strict=True)
    fit(callback, rng)
    runs = regaudit.load_run(callback.run_id)
    assert set(runs.activations.layer) - {"model"} == expected
    assert set(runs.shift.layer) - {"model"} <= expected
    # the layer table and the regularization tags still see the whole model
    assert runs.tags.set_index("key").value["regaudit.setup"] == "dropout+batchnorm"
    rows = json.loads(mlflow.artifacts.load_text(f"runs:/{callback.run_id}/regaudit/model.json"))["layers"]
    table = {row["name"]: row["audited"] for row in rows}
    assert {name for name, audited in table.items() if audited} == expected
    assert {row["name"]: row["reason"] for row in rows if not row["audited"]} == {
        name: "outside the selection" for name in set(table) - expected}
    assert set(table) == {"dense_a", "bn_a", "drop", "dense_b", "bn_b", "out"}
    # the dropout ensemble is the whole model's, whatever is selected
    assert "mc_acc" in set(runs.ensemble.measure)


def test_bn_measures_of_a_selected_bn_layer_equal_those_of_a_full_audit(rng):
    full = RegAudit(report=False, strict=True, seed=3)
    fit(full, np.random.default_rng(5))
    part = RegAudit(layers=keras.layers.BatchNormalization, report=False, strict=True, seed=3)
    fit(part, np.random.default_rng(5))
    a = regaudit.load_run(full.run_id).shift.query("measure == 'bn_var_ratio'")
    b = regaudit.load_run(part.run_id).shift.query("measure == 'bn_var_ratio'")
    merged = a.merge(b, on=["epoch", "layer"])
    assert len(merged) == 4
    # the full audit takes BN-input moments from the producing layer's summary, the
    # selection computes them itself: equal to float32 accuracy (~1e-7)
    np.testing.assert_allclose(merged.value_x, merged.value_y, rtol=1e-6)


def test_a_selection_that_matches_nothing_says_which_layers_exist(rng):
    with pytest.warns(regaudit.RegauditWarning, match=r"matched no layer.*dense_a, bn_a, drop"):
        fit(RegAudit(layers="conv.*", report=False), rng)
    with pytest.raises(UsageError, match="matched no layer"):
        fit(RegAudit(layers="conv.*", report=False, strict=True), rng)


@pytest.mark.parametrize("spec, message", [
    ("dense[", "not a valid regular expression"),
    ([], "empty list"),
    (3, "expects layer names"),
])
def test_bad_layers_argument_is_one_line_at_construction(spec, message):
    with pytest.raises(UsageError, match=message) as error:
        RegAudit(layers=spec)
    assert "\n" not in str(error.value)


def test_max_metric_layers_bounds_the_metric_keys(rng):
    callback = RegAudit(max_metric_layers=2, report=False, strict=True)
    fit(callback, rng)
    keys = [key for key in mlflow.tracking.MlflowClient().get_run(callback.run_id).data.metrics
            if key.startswith("regaudit/")]  # besides Keras' own loss and learning_rate
    layers = {key.split("/")[1] for key in keys}
    # first and last measured layer, plus every Dropout layer; model-wide always
    assert layers == {"dense_a", "out", "drop", "model"}
    # every layer is still in the tables
    assert set(regaudit.load_run(callback.run_id).activations.layer) >= {"bn_a", "dense_b", "bn_b"}


def test_evenly_spaced_keeps_both_ends():
    names = [f"l{i}" for i in range(100)]
    assert evenly_spaced(names, 5) == ["l0", "l25", "l50", "l74", "l99"]
    assert evenly_spaced(names[:3], 5) == names[:3]
    assert evenly_spaced(names, 1) == ["l0"] and evenly_spaced(names, 0) == []
    assert len(evenly_spaced(names, 32)) == 32
    assert LayerSelection(["l1.*", keras.layers.Dense])("l12", object())


@pytest.mark.parametrize("value", [-1, 2.5, True, "32"])
def test_bad_max_metric_layers_is_one_line_at_construction(value):
    with pytest.raises(UsageError, match="max_metric_layers expects an int >= 0") as error:
        RegAudit(max_metric_layers=value)
    assert "\n" not in str(error.value)


def test_reservoir_shrinks_with_depth_within_its_budget_and_floor():
    from regaudit.measures.activations import RESERVOIR_SIZE
    from regaudit.callbacks.probe.taps import RESERVOIR_BUDGET, RESERVOIR_FLOOR, reservoir_size_for

    def stack(depth):
        return keras.Sequential([keras.Input((2,))] + [keras.layers.Dense(2) for _ in range(depth)])

    assert reservoir_size_for(stack(32)) == RESERVOIR_SIZE == 65_536
    assert reservoir_size_for(stack(100)) == RESERVOIR_BUDGET // 100 == 20_971
    assert reservoir_size_for(stack(400)) == RESERVOIR_FLOOR == 8_192
