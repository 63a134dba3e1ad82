"""Models that call nested models from custom code, written as keras.io writes them: the
MLP-Mixer block (a nested Sequential called on the output of `keras.ops.transpose`), a
VAE whose `call` runs its encoder and decoder models (with the `Sampling` layer that
draws random numbers in inference), a Siamese network calling one tower twice, and a
token-classification model with padding. Each factory returns (compiled model, x, y);
all are tiny, for 2 CPU cores."""

import keras
import numpy as np
from keras import layers, ops


# -- keras.io "Image classification with modern MLP models" (MLP-Mixer) ---------------

class MLPMixerLayer(layers.Layer):
    def __init__(self, num_patches, hidden_units, dropout_rate, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.mlp1 = keras.Sequential([
            layers.Dense(units=num_patches, activation="gelu"),
            layers.Dense(units=num_patches),
            layers.Dropout(rate=dropout_rate),
        ])
        self.mlp2 = keras.Sequential([
            layers.Dense(units=num_patches, activation="gelu"),
            layers.Dense(units=hidden_units),
            layers.Dropout(rate=dropout_rate),
        ])
        self.normalize = layers.LayerNormalization(epsilon=1e-6)

    def build(self, input_shape):
        return super().build(input_shape)

    def call(self, inputs):
        x = self.normalize(inputs)
        x_channels = ops.transpose(x, axes=(0, 2, 1))
        mlp1_outputs = self.mlp1(x_channels)
        mlp1_outputs = ops.transpose(mlp1_outputs, axes=(0, 2, 1))
        x = mlp1_outputs + inputs
        x_patches = self.normalize(x)
        mlp2_outputs = self.mlp2(x_patches)
        return x + mlp2_outputs


PATCHES, HIDDEN = 4, 8


def mlp_mixer(rng):
    inputs = keras.Input(shape=(PATCHES, 6))
    x = layers.Dense(HIDDEN)(inputs)
    x = MLPMixerLayer(PATCHES, HIDDEN, 0.2, name="mlp_mixer_layer")(x)
    x = layers.GlobalAveragePooling1D()(x)
    x = layers.Dropout(0.3)(x)
    outputs = layers.Dense(3)(x)
    model = keras.Model(inputs, outputs, name="mlp_mixer")
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    x = rng.normal(size=(160, PATCHES, 6)).astype("float32")
    return model, x, (x[:, 0, 0] > 0).astype("int64") + (x[:, 1, 1] > 0)


# -- keras.io "Variational AutoEncoder", with a call() that runs encoder and decoder -----

class Sampling(layers.Layer):
    """Uses (z_mean, z_log_var) to sample z, the vector encoding a digit."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.seed_generator = keras.random.SeedGenerator(1337)

    def call(self, inputs):
        z_mean, z_log_var = inputs
        batch = ops.shape(z_mean)[0]
        dim = ops.shape(z_mean)[1]
        epsilon = keras.random.normal(shape=(batch, dim), seed=self.seed_generator)
        return z_mean + ops.exp(0.5 * z_log_var) * epsilon


LATENT = 2


def _encoder():
    encoder_inputs = keras.Input(shape=(8, 8, 1))
    x = layers.Conv2D(4, 3, activation="relu", strides=2, padding="same")(encoder_inputs)
    x = layers.Flatten()(x)
    x = layers.Dense(8, activation="relu")(x)
    x = layers.Dropout(0.2)(x)
    z_mean = layers.Dense(LATENT, name="z_mean")(x)
    z_log_var = layers.Dense(LATENT, name="z_log_var")(x)
    z = Sampling(name="sampling")([z_mean, z_log_var])
    return keras.Model(encoder_inputs, [z_mean, z_log_var, z], name="encoder")


def _decoder():
    latent_inputs = keras.Input(shape=(LATENT,))
    x = layers.Dense(4 * 4 * 4, activation="relu")(latent_inputs)
    x = layers.Reshape((4, 4, 4))(x)
    x = layers.Conv2DTranspose(4, 3, activation="relu", strides=2, padding="same")(x)
    decoder_outputs = layers.Conv2DTranspose(1, 3, activation="sigmoid", padding="same")(x)
    return keras.Model(latent_inputs, decoder_outputs, name="decoder")


class VAE(keras.Model):
    def __init__(self, encoder, decoder, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.decoder = decoder

    def call(self, inputs):
        z_mean, z_log_var, z = self.encoder(inputs)
        kl_loss = -0.5 * (1 + z_log_var - ops.square(z_mean) - ops.exp(z_log_var))
        self.add_loss(0.01 * ops.mean(ops.sum(kl_loss, axis=1)))
        return self.decoder(z)


def vae(rng):
    model = VAE(_encoder(), _decoder(), name="vae")
    model.compile(optimizer="adam", loss="binary_crossentropy")
    x = rng.uniform(size=(128, 8, 8, 1)).astype("float32")
    return model, x, x


# -- keras.io "Image similarity estimation using a Siamese Network with a contrastive loss"

def _euclidean_distance(vects):
    x, y = vects
    sum_square = ops.sum(ops.square(x - y), axis=1, keepdims=True)
    return ops.sqrt(ops.maximum(sum_square, keras.backend.epsilon()))


def _contrastive_loss(margin=1):
    def contrastive_loss(y_true, y_pred):
        square_pred = ops.square(y_pred)
        margin_square = ops.square(ops.maximum(margin - y_pred, 0))
        return ops.mean((1 - y_true) * square_pred + y_true * margin_square)

    return contrastive_loss


def siamese(rng):
    tower_input = layers.Input((6, 6, 1))
    x = layers.BatchNormalization()(tower_input)
    x = layers.Conv2D(4, (3, 3), activation="tanh")(x)
    x = layers.AveragePooling2D(pool_size=(2, 2))(x)
    x = layers.Flatten()(x)
    x = layers.Dropout(0.2)(x)
    x = layers.BatchNormalization()(x)
    x = layers.Dense(6, activation="tanh")(x)
    embedding_network = keras.Model(tower_input, x, name="embedding_network")
    input_1 = layers.Input((6, 6, 1))
    input_2 = layers.Input((6, 6, 1))
    tower_1 = embedding_network(input_1)
    tower_2 = embedding_network(input_2)
    merge_layer = layers.Lambda(_euclidean_distance, output_shape=(1,))([tower_1, tower_2])
    normal_layer = layers.BatchNormalization()(merge_layer)
    output_layer = layers.Dense(1, activation="sigmoid")(normal_layer)
    model = keras.Model(inputs=[input_1, input_2], outputs=output_layer, name="siamese")
    model.compile(loss=_contrastive_loss(margin=1), optimizer="RMSprop", metrics=["accuracy"])
    a = rng.normal(size=(160, 6, 6, 1)).astype("float32")
    b = rng.normal(size=(160, 6, 6, 1)).astype("float32")
    return model, [a, b], (a.mean(axis=(1, 2, 3)) > b.mean(axis=(1, 2, 3))).astype("float32")


# -- token classification with padding (keras.io "Named Entity Recognition") ------------

VOCAB, MAXLEN, TAGS = 30, 10, 4


def token_classifier(rng):
    """Per-token logits over TAGS classes; token 0 is padding (`mask_zero=True`, and
    the loss's `ignore_class=-1` on the padded labels)."""
    inputs = keras.Input(shape=(MAXLEN,), dtype="int32")
    x = layers.Embedding(VOCAB, 8, mask_zero=True)(inputs)
    x = layers.Bidirectional(layers.LSTM(6, return_sequences=True, dropout=0.2))(x)
    x = layers.Dropout(0.3)(x)
    outputs = layers.Dense(TAGS, name="tag_logits")(x)
    model = keras.Model(inputs, outputs, name="token_classifier")
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-1))
    lengths = rng.integers(3, MAXLEN + 1, 160)
    tokens = rng.integers(1, VOCAB, (160, MAXLEN))
    pad = np.arange(MAXLEN)[None, :] >= lengths[:, None]
    tokens[pad] = 0
    tags = (tokens % TAGS).astype("int64")
    tags[pad] = -1
    return model, tokens.astype("int32"), tags


FACTORIES = {"mlp_mixer": mlp_mixer, "vae": vae, "siamese": siamese,
             "token_classifier": token_classifier}


def build(name, seed=0):
    keras.utils.set_random_seed(seed)
    return FACTORIES[name](np.random.default_rng(seed))
