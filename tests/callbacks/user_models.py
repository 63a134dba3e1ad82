"""Models written the way public Keras examples and keras-hub write them: custom layers
with Dropout inside, MultiHeadAttention(dropout=...), RNN dropout, subclassed models,
logit heads, dict targets, every Dropout-family class. Each factory returns
(compiled model, x, y); all are tiny, for 2 CPU cores."""

import keras
import numpy as np
from keras import layers, ops

VOCAB, MAXLEN = 40, 12


# -- keras.io "Text classification with Transformer" ------------------------------------

class TransformerBlock(layers.Layer):
    def __init__(self, embed_dim, num_heads, ff_dim, rate=0.1, attention_dropout=0.2, **kwargs):
        super().__init__(**kwargs)
        self.att = layers.MultiHeadAttention(num_heads=num_heads, key_dim=embed_dim,
                                             dropout=attention_dropout)
        self.ffn = keras.Sequential([layers.Dense(ff_dim, activation="relu"), layers.Dense(embed_dim)])
        self.layernorm1 = layers.LayerNormalization(epsilon=1e-6)
        self.layernorm2 = layers.LayerNormalization(epsilon=1e-6)
        self.dropout1 = layers.Dropout(rate)
        self.dropout2 = layers.Dropout(rate)

    def call(self, inputs, training=False):
        attn_output = self.att(inputs, inputs)
        attn_output = self.dropout1(attn_output, training=training)
        out1 = self.layernorm1(inputs + attn_output)
        ffn_output = self.ffn(out1)
        ffn_output = self.dropout2(ffn_output, training=training)
        return self.layernorm2(out1 + ffn_output)


class TokenAndPositionEmbedding(layers.Layer):
    def __init__(self, maxlen, vocab_size, embed_dim, **kwargs):
        super().__init__(**kwargs)
        self.token_emb = layers.Embedding(input_dim=vocab_size, output_dim=embed_dim)
        self.pos_emb = layers.Embedding(input_dim=maxlen, output_dim=embed_dim)

    def call(self, x):
        maxlen = ops.shape(x)[-1]
        positions = ops.arange(start=0, stop=maxlen, step=1)
        positions = self.pos_emb(positions)
        return self.token_emb(x) + positions


def _tokens(rng, samples=256):
    x = rng.integers(0, VOCAB, (samples, MAXLEN))
    y = (x[:, :3].sum(axis=1) > 1.5 * VOCAB).astype("int64")  # learnable
    return x, y


def text_transformer(rng):
    """A logit head (`from_logits=True`), as keras-hub classifiers have."""
    inputs = layers.Input(shape=(MAXLEN,))
    x = TokenAndPositionEmbedding(MAXLEN, VOCAB, 16, name="embedding")(inputs)
    x = TransformerBlock(16, 2, 16, name="transformer_block")(x)
    x = layers.GlobalAveragePooling1D()(x)
    x = layers.Dropout(0.1, name="head_dropout")(x)
    x = layers.Dense(8, activation="relu")(x)
    outputs = layers.Dense(2, name="logits")(x)
    model = keras.Model(inputs=inputs, outputs=outputs, name="text_transformer")
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return (model, *_tokens(rng))


# -- keras.io "Timeseries classification with a Transformer model" ----------------------

def transformer_encoder(inputs, head_size, num_heads, ff_dim, dropout=0.0):
    """keras.io's encoder block, as written there: attention and Conv1D feed-forward, each
    after a LayerNormalization over the features, each followed by Dropout."""
    x = layers.LayerNormalization(epsilon=1e-6)(inputs)
    x = layers.MultiHeadAttention(key_dim=head_size, num_heads=num_heads, dropout=dropout)(x, x)
    x = layers.Dropout(dropout)(x)
    res = x + inputs
    x = layers.LayerNormalization(epsilon=1e-6)(res)
    x = layers.Conv1D(filters=ff_dim, kernel_size=1, activation="relu")(x)
    x = layers.Dropout(dropout)(x)
    x = layers.Conv1D(filters=inputs.shape[-1], kernel_size=1)(x)
    return x + res


TIMESTEPS = 24


def timeseries_transformer(rng, samples=192):
    """Input (batch, time, 1 feature): the Dropout after attention draws a mask of shape
    (batch, time, 1), and the LayerNormalization after it needs that static feature axis."""
    inputs = keras.Input(shape=(TIMESTEPS, 1))
    x = inputs
    for _ in range(2):
        x = transformer_encoder(x, head_size=8, num_heads=2, ff_dim=4, dropout=0.25)
    x = layers.GlobalAveragePooling1D(data_format="channels_first")(x)
    x = layers.Dense(16, activation="relu")(x)
    x = layers.Dropout(0.4)(x)
    outputs = layers.Dense(2, activation="softmax")(x)
    model = keras.Model(inputs, outputs, name="timeseries_transformer")
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy",
                  metrics=["sparse_categorical_accuracy"])
    t = np.linspace(0, 4 * np.pi, TIMESTEPS)
    y = rng.integers(0, 2, samples)
    x = (np.sin(t[None, :] * (1 + y[:, None])) + 0.3 * rng.normal(size=(samples, TIMESTEPS)))
    return model, x[..., None].astype("float32"), y


# -- keras.io "Image classification with Vision Transformer" ----------------------------

class Patches(layers.Layer):
    def __init__(self, patch_size, **kwargs):
        super().__init__(**kwargs)
        self.patch_size = patch_size

    def call(self, images):
        batch = ops.shape(images)[0]
        patches = ops.image.extract_patches(images, size=self.patch_size)
        return ops.reshape(patches, (batch, -1, patches.shape[-1]))


class PatchEncoder(layers.Layer):
    def __init__(self, num_patches, projection_dim, **kwargs):
        super().__init__(**kwargs)
        self.num_patches = num_patches
        self.projection = layers.Dense(units=projection_dim)
        self.position_embedding = layers.Embedding(input_dim=num_patches, output_dim=projection_dim)

    def call(self, patch):
        positions = ops.expand_dims(ops.arange(start=0, stop=self.num_patches, step=1), axis=0)
        return self.projection(patch) + self.position_embedding(positions)


def vit(rng):
    inputs = keras.Input(shape=(8, 8, 1))
    patches = Patches(4, name="patches")(inputs)
    encoded = PatchEncoder(4, 8, name="patch_encoder")(patches)
    x1 = layers.LayerNormalization(epsilon=1e-6)(encoded)
    attention = layers.MultiHeadAttention(num_heads=2, key_dim=8, dropout=0.1, name="mha")(x1, x1)
    x2 = layers.Add()([attention, encoded])
    x3 = layers.LayerNormalization(epsilon=1e-6)(x2)
    x3 = layers.Dense(8, activation="gelu")(x3)
    x3 = layers.Dropout(0.1, name="mlp_dropout")(x3)
    representation = layers.Flatten()(layers.Add()([x3, x2]))
    representation = layers.Dropout(0.5, name="representation_dropout")(representation)
    outputs = layers.Dense(3, activation="softmax")(representation)
    model = keras.Model(inputs, outputs, name="vit")
    model.compile("adam", "sparse_categorical_crossentropy")
    x = rng.normal(size=(192, 8, 8, 1)).astype("float32")
    return model, x, rng.integers(0, 3, 192)


# -- RNNs -------------------------------------------------------------------------------

def lstm_gru(rng):
    inputs = keras.Input(shape=(MAXLEN,))
    x = layers.Embedding(VOCAB, 8)(inputs)
    x = layers.LSTM(8, dropout=0.2, recurrent_dropout=0.3, return_sequences=True, name="lstm")(x)
    x = layers.Bidirectional(layers.GRU(6, dropout=0.25, recurrent_dropout=0.1), name="bigru")(x)
    outputs = layers.Dense(1, activation="sigmoid")(x)
    model = keras.Model(inputs, outputs, name="lstm_gru")
    model.compile("adam", "binary_crossentropy", metrics=["accuracy"])
    return (model, *_tokens(rng, 160))


# -- a custom residual block with BatchNormalization and Dropout ------------------------

class ResidualBlock(layers.Layer):
    def __init__(self, filters, rate=0.3, **kwargs):
        super().__init__(**kwargs)
        self.conv1 = layers.Conv2D(filters, 3, padding="same", use_bias=False)
        self.bn1 = layers.BatchNormalization()
        self.drop = layers.Dropout(rate)
        self.conv2 = layers.Conv2D(filters, 3, padding="same", use_bias=False)
        self.bn2 = layers.BatchNormalization()

    def call(self, x, training=False):
        h = ops.relu(self.bn1(self.conv1(x), training=training))
        h = self.drop(h, training=training)
        h = self.bn2(self.conv2(h), training=training)
        return ops.relu(h + x)


def residual_cnn(rng):
    inputs = keras.Input(shape=(8, 8, 1))
    x = layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    x = ResidualBlock(4, name="res_block")(x)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(3, activation="softmax")(x)
    model = keras.Model(inputs, outputs, name="residual_cnn")
    model.compile("adam", "sparse_categorical_crossentropy")
    x = rng.normal(size=(160, 8, 8, 1)).astype("float32")
    return model, x, rng.integers(0, 3, 160)


# -- subclassed models ------------------------------------------------------------------

class SubclassedClassifier(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense1 = layers.Dense(16, activation="relu")
        self.bn = layers.BatchNormalization()
        self.dropout = layers.Dropout(0.4)
        self.dense2 = layers.Dense(3)

    def call(self, inputs, training=False):
        x = self.dense1(inputs)
        x = self.bn(x, training=training)
        x = self.dropout(x, training=training)
        return self.dense2(x)


def subclassed(rng):
    model = SubclassedClassifier(name="subclassed")
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = rng.normal(size=(160, 10)).astype("float32")
    return model, x, rng.integers(0, 3, 160)


class Sampling(layers.Layer):
    def call(self, inputs):
        z_mean, z_log_var = inputs
        epsilon = keras.random.normal(shape=ops.shape(z_mean), seed=self.seed_generator)
        return z_mean + ops.exp(0.5 * z_log_var) * epsilon

    def build(self, input_shape):
        self.seed_generator = keras.random.SeedGenerator(1337)


class VAE(keras.Model):
    """keras.io's VAE: trains only through train_step, no call()."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        x = keras.Input((6,))
        h = layers.Dropout(0.2)(layers.Dense(8, activation="relu")(x))
        z_mean, z_log_var = layers.Dense(2)(h), layers.Dense(2)(h)
        self.encoder = keras.Model(x, [z_mean, z_log_var, Sampling()([z_mean, z_log_var])], name="encoder")
        z = keras.Input((2,))
        self.decoder = keras.Model(z, layers.Dense(6)(layers.Dense(8, activation="relu")(z)), name="decoder")
        self.total_loss_tracker = keras.metrics.Mean(name="total_loss")

    @property
    def metrics(self):
        return [self.total_loss_tracker]

    def train_step(self, data):
        import tensorflow as tf

        with tf.GradientTape() as tape:
            z_mean, z_log_var, z = self.encoder(data)
            reconstruction = self.decoder(z)
            loss = ops.mean((data - reconstruction) ** 2) - 0.5 * ops.mean(
                1 + z_log_var - ops.square(z_mean) - ops.exp(z_log_var))
        grads = tape.gradient(loss, self.trainable_weights)
        self.optimizer.apply_gradients(zip(grads, self.trainable_weights))
        self.total_loss_tracker.update_state(loss)
        return {"loss": self.total_loss_tracker.result()}


def vae(rng):
    model = VAE(name="vae")
    model.compile(optimizer="adam")
    return model, rng.normal(size=(96, 6)).astype("float32"), None


# -- heads and targets ------------------------------------------------------------------

def multi_output_dict(rng):
    """Two named outputs, trained with dict targets whose sorted key order is not the
    output order."""
    inputs = keras.Input((8,), name="features")
    h = layers.Dropout(0.3)(layers.Dense(16, activation="relu")(inputs))
    outputs = {"z_class": layers.Dense(3, activation="softmax", name="z_class")(h),
               "a_score": layers.Dense(1, name="a_score")(h)}
    model = keras.Model(inputs, outputs, name="multi_output")
    model.compile("adam", loss={"z_class": "sparse_categorical_crossentropy", "a_score": "mse"})
    x = rng.normal(size=(160, 8)).astype("float32")
    y = {"z_class": (x[:, 0] > 0).astype("int64") + (x[:, 1] > 0), "a_score": x[:, :1] * 2.0}
    return model, x, y


class ScaledDropout(layers.Dropout):
    """A user's Dropout subclass (it is still a Dropout)."""


def every_dropout_class(rng):
    inputs = keras.Input((6, 8))
    x = layers.Dense(8, activation="relu")(inputs)
    x = layers.Dropout(0.3, name="plain")(x)
    x = layers.SpatialDropout1D(0.25, name="spatial")(x)
    x = layers.GaussianDropout(0.3, name="gaussian_dropout")(x)
    x = layers.AlphaDropout(0.2, name="alpha")(x)
    x = layers.GaussianNoise(0.5, name="gaussian_noise")(x)
    x = ScaledDropout(0.35, name="scaled")(layers.Flatten()(x))
    outputs = layers.Dense(3, activation="softmax")(x)
    model = keras.Model(inputs, outputs, name="every_dropout")
    model.compile("adam", "sparse_categorical_crossentropy")
    x = rng.normal(size=(160, 6, 8)).astype("float32")
    return model, x, rng.integers(0, 3, 160)


def binary_logit(rng):
    inputs = keras.Input((5,))
    h = layers.Dropout(0.3)(layers.Dense(12, activation="relu")(inputs))
    model = keras.Model(inputs, layers.Dense(1)(h), name="binary_logit")
    model.compile("adam", keras.losses.BinaryCrossentropy(from_logits=True))
    x = rng.normal(size=(160, 5)).astype("float32")
    return model, x, (x[:, 0] > 0).astype("float32")


def augmented_dataset(x, y, batch_size=32, seed=3):
    """A `tf.data` pipeline with random augmentation in its `map`, as keras.io writes it."""
    import tensorflow as tf

    augment = keras.Sequential([layers.RandomFlip("horizontal", seed=seed),
                                layers.RandomTranslation(0.1, 0.1, seed=seed)])
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=seed).batch(batch_size)
    return dataset.map(lambda a, b: (augment(a, training=True), b))


FACTORIES = {
    "text_transformer": text_transformer, "vit": vit, "lstm_gru": lstm_gru,
    "residual_cnn": residual_cnn, "subclassed": subclassed, "multi_output_dict": multi_output_dict,
    "every_dropout_class": every_dropout_class, "binary_logit": binary_logit,
    "timeseries_transformer": timeseries_transformer,
}


def build(name, seed=0):
    keras.utils.set_random_seed(seed)
    return FACTORIES[name](np.random.default_rng(seed))
