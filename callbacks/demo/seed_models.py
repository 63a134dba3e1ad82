"""The three Keras models of the seed article, given an `Input`, plus the no-regularization
and BatchNormalization-only variants of the third that the demo study compares."""

import keras
from keras import layers


def dropout_mlp(input_shape=(784,), classes=10):
    """Example 1: Dense(128, relu) -> Dropout(0.5) -> Dense(softmax)."""
    return keras.Sequential([
        keras.Input(input_shape),
        layers.Dense(128, activation="relu"),
        layers.Dropout(0.5),
        layers.Dense(classes, activation="softmax"),
    ], name="dropout_mlp")


def batchnorm_cnn(input_shape=(28, 28, 1), classes=10):
    """Example 2: Conv2D(32, relu) -> BatchNormalization -> MaxPooling -> Dense(softmax)."""
    return keras.Sequential([
        keras.Input(input_shape),
        layers.Conv2D(32, (3, 3), activation="relu"),
        layers.BatchNormalization(),
        layers.MaxPooling2D((2, 2)),
        layers.Flatten(),
        layers.Dense(classes, activation="softmax"),
    ], name="batchnorm_cnn")


def cnn(input_shape=(28, 28, 1), classes=10, dropout=True, batchnorm=True):
    """Example 3 (both flags on): Conv2D(32, relu) -> BN -> MaxPooling -> Dropout(0.25)
    -> Conv2D(64, relu) -> BN -> Flatten -> Dropout(0.5) -> Dense(softmax). The flags
    drop the Dropout or the BatchNormalization layers for the article's comparison."""
    stack = [keras.Input(input_shape), layers.Conv2D(32, (3, 3), activation="relu")]
    stack += [layers.BatchNormalization()] if batchnorm else []
    stack += [layers.MaxPooling2D((2, 2))]
    stack += [layers.Dropout(0.25)] if dropout else []
    stack += [layers.Conv2D(64, (3, 3), activation="relu")]
    stack += [layers.BatchNormalization()] if batchnorm else []
    stack += [layers.Flatten()]
    stack += [layers.Dropout(0.5)] if dropout else []
    stack += [layers.Dense(classes, activation="softmax")]
    name = "cnn_" + ("_".join(n for n, on in (("dropout", dropout), ("batchnorm", batchnorm)) if on) or "plain")
    return keras.Sequential(stack, name=name)


def dropout_batchnorm_cnn(input_shape=(28, 28, 1), classes=10):
    """Example 3 of the article exactly."""
    return cnn(input_shape, classes, dropout=True, batchnorm=True)
