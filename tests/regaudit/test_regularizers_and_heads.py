"""The one definition of the regularizers (every Dropout-family class and subclass,
attention dropout, RNN dropout, BatchNormalization) and the heads decided from the
compiled loss, against Keras' own classes and scipy's softmax."""

import keras
import numpy as np
import pytest
from keras import layers
from scipy import special

from regaudit.measures import heads
from regaudit.model.regularizers import (
    DROP_FRAC, NOISE_VAR, is_batchnorm, noise_kind, regularizer_of, sources_of)
from regaudit.model.tags import regularization_tags


class MyDropout(layers.Dropout):
    pass


@pytest.mark.parametrize("layer, kind, measure, nominal", [
    (layers.Dropout(0.3), "dropout", DROP_FRAC, 0.3),
    (layers.SpatialDropout1D(0.2), "dropout", DROP_FRAC, 0.2),
    (layers.SpatialDropout2D(0.2), "dropout", DROP_FRAC, 0.2),
    (layers.SpatialDropout3D(0.2), "dropout", DROP_FRAC, 0.2),
    (MyDropout(0.4), "dropout", DROP_FRAC, 0.4),
    (layers.AlphaDropout(0.1), "alpha_dropout", DROP_FRAC, 0.1),
    (layers.GaussianDropout(0.3), "gaussian_dropout", NOISE_VAR, 0.3 / 0.7),
    (layers.GaussianNoise(0.5), "gaussian_noise", NOISE_VAR, 0.25),
])
def test_every_dropout_family_class_is_one_noise_source_with_its_nominal_drop(layer, kind, measure, nominal):
    (source,) = sources_of(layer, "block/noise")
    assert (source.name, source.kind, source.drop_measure) == ("block/noise", kind, measure)
    assert source.nominal == pytest.approx(nominal)
    assert noise_kind(layer) == kind and regularizer_of(layer) == kind


def test_a_rate_of_zero_is_no_source_but_the_layer_is_still_a_dropout():
    assert sources_of(layers.Dropout(0.0), "d") == []
    assert regularizer_of(layers.Dropout(0.0)) == "dropout"


def test_attention_dropout_is_the_dropout_inside_multi_head_attention():
    attention = layers.MultiHeadAttention(num_heads=2, key_dim=4, dropout=0.2)
    query = np.zeros((1, 3, 4), "float32")
    attention(query, query)  # builds its sublayers
    inner = attention._dropout_layer
    assert noise_kind(inner, parent=attention) == "attention_dropout"
    assert noise_kind(inner) == "dropout"
    assert sources_of(attention, "mha") == []  # its noise is its sublayer's


@pytest.mark.parametrize("rnn, expected", [
    (layers.LSTM(4, dropout=0.2, recurrent_dropout=0.3),
     [("lstm/dropout", "rnn_dropout", 0.2), ("lstm/recurrent_dropout", "rnn_recurrent_dropout", 0.3)]),
    (layers.GRU(4, dropout=0.25), [("lstm/dropout", "rnn_dropout", 0.25)]),
    (layers.SimpleRNN(4, recurrent_dropout=0.1), [("lstm/recurrent_dropout", "rnn_recurrent_dropout", 0.1)]),
    (layers.LSTM(4), []),
    (layers.RNN([layers.LSTMCell(4, dropout=0.1), layers.GRUCell(4, recurrent_dropout=0.2)]),
     [("lstm/cell_0/dropout", "rnn_dropout", 0.1), ("lstm/cell_1/recurrent_dropout", "rnn_recurrent_dropout", 0.2)]),
])
def test_rnn_dropout_and_recurrent_dropout_are_sources_of_the_rnn_layer(rnn, expected):
    assert [(s.name, s.kind, s.rate) for s in sources_of(rnn, "lstm")] == expected
    assert regularizer_of(rnn) == ("rnn_dropout" if expected else None)


def test_batchnormalization_synchronized_or_not_and_nothing_else():
    assert is_batchnorm(layers.BatchNormalization())
    assert is_batchnorm(layers.BatchNormalization(synchronized=True))
    assert regularizer_of(layers.BatchNormalization()) == "batchnorm"
    assert not is_batchnorm(layers.LayerNormalization())
    assert regularizer_of(layers.Dense(3)) is None and sources_of(layers.Dense(3), "d") == []


def test_tags_count_rnn_and_custom_layer_sources_from_the_layer_table():
    rows = [
        {"name": "emb", "layer_class": "Embedding", "activation": None, "rate": None, "sources": [],
         "regularizer": None, "noise_sources": []},
        {"name": "block/scaled", "layer_class": "ScaledDropout", "activation": None, "rate": 0.35,
         "sources": ["emb"], "regularizer": "dropout",
         "noise_sources": [{"name": "block/scaled", "kind": "dropout", "rate": 0.35}]},
        {"name": "lstm", "layer_class": "LSTM", "activation": "tanh", "rate": None,
         "sources": ["block/scaled"], "regularizer": "rnn_dropout",
         "noise_sources": [{"name": "lstm/dropout", "kind": "rnn_dropout", "rate": 0.2},
                           {"name": "lstm/recurrent_dropout", "kind": "rnn_recurrent_dropout", "rate": 0.3}]},
        {"name": "bn", "layer_class": "MyBatchNorm", "activation": None, "rate": None,
         "sources": ["lstm"], "regularizer": "batchnorm", "noise_sources": []},
    ]
    tags = regularization_tags(rows)
    assert tags["setup"] == "dropout+batchnorm"
    assert tags["dropout_layers"] == 2
    assert tags["dropout_rates"] == "0.35,0.2,0.3"
    assert tags["batchnorm_layers"] == 1


@pytest.mark.parametrize("loss, from_logits, activation, units, expected", [
    ("sparse_categorical_crossentropy", None, "softmax", 10, "probabilities"),
    ("SparseCategoricalCrossentropy", True, None, 10, "logits"),
    ("CategoricalFocalCrossentropy", True, "linear", 4, "logits"),
    ("categorical_crossentropy", False, "softmax", 3, "probabilities"),
    ("binary_crossentropy", None, "sigmoid", 1, "binary_probability"),
    ("BinaryFocalCrossentropy", True, None, 1, "binary_logits"),
    ("BinaryCrossentropy", False, "sigmoid", 5, "regression"),  # multi-label
    ("mse", None, "linear", 1, "regression"),
    (None, None, "softmax", 3, "probabilities"),
    (None, None, "sigmoid", 1, "binary_probability"),
    (None, None, None, 3, "regression"),
])
def test_the_head_follows_the_compiled_loss_then_the_activation(loss, from_logits, activation, units, expected):
    assert heads.head_kind(loss, from_logits, activation, units) == expected


def test_probabilities_from_logits_and_binary_heads_match_scipy():
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=30, size=(8, 5, 4))
    np.testing.assert_allclose(heads.as_probabilities(logits, "logits"), special.softmax(logits, axis=-1),
                               rtol=1e-12, atol=1e-300)
    z = rng.normal(size=(8, 5, 1))
    p = heads.as_probabilities(z, "binary_logits")
    np.testing.assert_allclose(p[..., 1], special.expit(z[..., 0]), rtol=1e-12)
    np.testing.assert_allclose(p.sum(-1), 1.0)
    q = rng.uniform(size=(6, 1))
    np.testing.assert_array_equal(heads.as_probabilities(q, "binary_probability"), np.c_[1 - q, q])
    assert heads.as_probabilities(q, "regression") is None


def test_keras_loss_objects_are_read_for_their_from_logits_flag():
    from regaudit.callbacks.families.output_heads import loss_of as _loss_of

    assert _loss_of(keras.losses.SparseCategoricalCrossentropy(from_logits=True), 0, "out") == (
        "SparseCategoricalCrossentropy", True, None)
    assert _loss_of(keras.losses.SparseCategoricalCrossentropy(ignore_class=-1), 0, "out") == (
        "SparseCategoricalCrossentropy", False, -1)
    assert _loss_of({"b": "mse", "a": keras.losses.BinaryCrossentropy()}, 1, "a") == (
        "BinaryCrossentropy", False, None)
    assert _loss_of(["mse", "binary_crossentropy"], 1, None) == ("binary_crossentropy", None, None)
    assert _loss_of(keras.losses.sparse_categorical_crossentropy, 0, None)[0] == "sparse_categorical_crossentropy"


def test_per_position_heads_are_named_and_their_padding_left_out():
    from regaudit.measures.heads import describe_head, position_labels, position_mask

    assert describe_head("logits", (8, 5)) == "logits"
    assert describe_head("logits", (8, 12, 50257), "GPT2CausalLM") == "per-token logits (vocabulary 50257)"
    assert describe_head("probabilities", (8, 4, 4, 3)) == "per-position probabilities (3 classes)"
    assert describe_head("regression", (8, 12, 3)) == "regression"
    rng = np.random.default_rng(0)
    sparse = rng.integers(0, 4, (6, 5))
    assert np.array_equal(position_labels(sparse, (6, 5), 4), sparse)
    assert np.array_equal(position_labels(sparse[..., None], (6, 5), 4), sparse)
    assert np.array_equal(position_labels(np.eye(4)[sparse], (6, 5), 4), sparse)
    keras_mask = rng.random((6, 5)) > 0.3
    labels = np.where(rng.random((6, 5)) > 0.8, -1, sparse)
    per_sample = np.array([1.0, 0.0, 2.0, 1.0, 1.0, 0.5])
    per_token = rng.integers(0, 2, (6, 5)).astype(float)
    want = keras_mask & (labels != -1) & (per_sample[:, None] != 0)
    assert np.array_equal(position_mask((6, 5), keras_mask, labels, -1, per_sample), want)
    assert np.array_equal(position_mask((6, 5), None, None, None, per_token[..., None]), per_token != 0)
    assert position_mask((6, 5)).all()
