"""A study's variants built from live Keras models: the layers each variant holds, its
compile settings and learning rate, training, and what asks for a builder."""

import keras
import numpy as np
import pytest
from keras import layers

from regaudit.callbacks.demo.seed_models import cnn
from regaudit.callbacks.study.variants import build_variant, roles
from regaudit.studies.rewrite import NeedsBuilder


def described(model):
    out = []
    for layer in model.layers:
        activation = getattr(layer, "activation", None)
        out.append((type(layer).__name__, getattr(activation, "__name__", None), getattr(layer, "rate", None)))
    return out


@pytest.fixture(scope="module")
def seed_cnn():
    model = cnn()
    model.compile(optimizer=keras.optimizers.Adam(2e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def test_the_article_cnn_variants_hold_the_layers_their_levels_name(seed_cnn):
    before, _ = build_variant(seed_cnn, {"bn": "before", "dropout": 0.3, "lr": 10.0})
    assert described(before) == [
        ("Conv2D", "linear", None), ("BatchNormalization", None, None), ("Activation", "relu", None),
        ("MaxPooling2D", None, None), ("Dropout", None, 0.3), ("Conv2D", "linear", None),
        ("BatchNormalization", None, None), ("Activation", "relu", None), ("Flatten", None, None),
        ("Dropout", None, 0.3), ("Dense", "softmax", None)]
    assert float(before.optimizer.learning_rate) == pytest.approx(2e-2)
    assert type(before.optimizer).__name__ == "Adam" and before.loss == "sparse_categorical_crossentropy"
    plain, _ = build_variant(seed_cnn, {"bn": "none", "dropout": 0.0})
    assert [c for c, _, _ in described(plain)] == ["Conv2D", "MaxPooling2D", "Conv2D", "Flatten", "Dense"]
    spatial, notes = build_variant(seed_cnn, {"spatial": True})
    assert [c for c, _, _ in described(spatial) if "Dropout" in c] == ["SpatialDropout2D", "Dropout"]
    assert notes == ["'dropout' drops whole channels (SpatialDropout2D)"]
    x, y = np.random.default_rng(0).random((16, 28, 28, 1), dtype=np.float32), np.arange(16) % 10
    for variant in (before, plain, spatial):  # fresh weights, trainable as compiled
        assert variant.fit(x, y, epochs=1, verbose=0).history["loss"][0] > 0
    assert not any(np.array_equal(a, b) for a, b in zip(before.get_weights()[:1], seed_cnn.get_weights()[:1]))


def test_a_functional_model_with_a_nested_sequential_is_rewritten_inside_too():
    block = keras.Sequential([keras.Input((8,)), layers.Dense(8, activation="relu"), layers.Dropout(0.1)],
                             name="block")
    inputs = keras.Input((8,))
    hidden = block(inputs)
    hidden = layers.Dense(8, activation="relu")(hidden)
    outputs = layers.Dense(3, activation="softmax")(hidden)
    model = keras.Model(inputs, outputs)
    model.compile("sgd", "sparse_categorical_crossentropy")
    assert roles(model)["block"] == "model" and roles(model)["dropout"] == "dropout"
    variant, _ = build_variant(model, {"dropout": 0.4, "bn": "after"})
    inner = variant.get_layer("block")
    assert [type(l).__name__ for l in inner.layers] == ["Dense", "BatchNormalization", "Dropout"]
    assert inner.layers[-1].rate == pytest.approx(0.4)
    assert [type(l).__name__ for l in variant.layers[1:]] == ["Sequential", "Dense", "BatchNormalization", "Dense"]
    x = np.random.default_rng(1).random((8, 8), dtype=np.float32)
    assert variant.predict(x, verbose=0).shape == (8, 3)


class Block(layers.Layer):
    """A custom layer holding Dropout in its own call (keras.io style)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = layers.Dense(8, activation="relu")
        self.drop = layers.Dropout(0.2)

    def call(self, x, training=None):
        return self.drop(self.dense(x), training=training)


class Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.hidden = layers.Dense(8, activation="relu")
        self.out = layers.Dense(2)

    def call(self, x):
        return self.out(self.hidden(x))


def test_custom_layers_holding_dropout_and_subclassed_models_ask_for_a_builder():
    inputs = keras.Input((8,))
    model = keras.Model(inputs, layers.Dense(2)(Block(name="block")(inputs)))
    model.compile("adam", "mse")
    with pytest.raises(NeedsBuilder, match="layer 'block' holds Dropout or BatchNormalization.*def build"):
        build_variant(model, {"dropout": 0.1})
    lr_only, _ = build_variant(model, {"lr": 3.0})  # a learning-rate factor needs no rewrite
    assert float(lr_only.optimizer.learning_rate) == pytest.approx(3e-3)
    sub = Subclassed()
    sub(np.zeros((1, 8), "float32"))
    sub.compile("adam", "mse")
    with pytest.raises(NeedsBuilder, match="subclassed Subclassed"):
        build_variant(sub, {"bn": "none"})
