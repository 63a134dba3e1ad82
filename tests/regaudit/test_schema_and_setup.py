"""Metric keys MLflow accepts, and the regularization tags read from a layer table."""

import re

from regaudit.schema import MAX_KEY_LENGTH, metric_key
from regaudit.model.tags import regularization_tags

ALLOWED = re.compile(r"^[A-Za-z0-9_\-./: ]+$")


def test_metric_keys_use_only_characters_mlflow_allows():
    assert metric_key("conv2d", "mean") == "regaudit/conv2d/mean"
    assert metric_key("block/dense:1", "std") == "regaudit/block/dense:1/std"
    odd = metric_key("dense<script>é", "dead_frac")
    assert ALLOWED.match(odd) and odd.endswith("/dead_frac")
    long = metric_key("x" * 400, "mean")
    assert len(long) <= MAX_KEY_LENGTH and long.endswith("/mean")


def test_a_user_layer_named_model_does_not_collide_with_model_level_keys():
    assert metric_key("model", "dead_frac_mean") == "regaudit/model/dead_frac_mean"
    assert metric_key("model ", "mean") == "regaudit/model /mean"


def layer(name, cls, sources=(), activation=None, rate=None):
    return {"name": name, "layer_class": cls, "sources": list(sources),
            "activation": activation, "rate": rate}


def test_seed_article_third_model_tags():
    layers = [
        layer("conv2d", "Conv2D", ["input:x"], "relu"),
        layer("bn", "BatchNormalization", ["conv2d"]),
        layer("pool", "MaxPooling2D", ["bn"]),
        layer("drop", "Dropout", ["pool"], rate=0.25),
        layer("conv2d_1", "Conv2D", ["drop"], "relu"),
        layer("bn_1", "BatchNormalization", ["conv2d_1"]),
        layer("flatten", "Flatten", ["bn_1"]),
        layer("drop_1", "Dropout", ["flatten"], rate=0.5),
        layer("dense", "Dense", ["drop_1"], "softmax"),
    ]
    assert regularization_tags(layers) == {
        "setup": "dropout+batchnorm",
        "dropout_layers": 2,
        "dropout_rates": "0.25,0.5",
        "batchnorm_layers": 2,
        "batchnorm_placement": "after_activation",
        "dropout_before_batchnorm": "none",
    }


def test_dropout_feeding_batchnorm_and_pre_activation_placement():
    layers = [
        layer("dense", "Dense", ["input:x"], "linear"),
        layer("drop", "Dropout", ["dense"], rate=0.3),
        layer("bn", "BatchNormalization", ["drop"]),
        layer("act", "Activation", ["bn"], "relu"),
        layer("bn2", "BatchNormalization", ["act"]),
    ]
    tags = regularization_tags(layers)
    assert tags["dropout_before_batchnorm"] == "bn"
    assert tags["batchnorm_placement"] == "mixed"
    assert regularization_tags(layers[:3])["batchnorm_placement"] == "before_activation"


def test_no_regularization():
    tags = regularization_tags([layer("dense", "Dense", ["input:x"], "relu")])
    assert tags["setup"] == "none" and tags["batchnorm_placement"] == "none"
    assert tags["dropout_rates"] == ""
