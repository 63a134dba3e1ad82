"""`regaudit demo`: a study of the seed article's third model on real data.

The data is scikit-learn's bundled handwritten digits (1,797 images, no download),
upsampled from 8x8 to MNIST's 28x28 so the article's models run unchanged. The demo is a
`regaudit study` of the article's third model (`article_model`, compiled as the article
compiles it) with the `DESIGN` below: Dropout off / on x BatchNormalization none / after /
before the activation, and the model as given.
"""

import numpy as np

DEMO_EXPERIMENT = "regaudit-demo"
#: the demo's design: the contrasts behind the article's claims on Dropout and BN
DESIGN = "dropout-x-bn"


def load_digits_28(seed=0, validation_fraction=0.2):
    """((x_train, y_train), (x_val, y_val)): digits as 28x28x1 floats in [0, 1]."""
    from scipy.ndimage import zoom
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = zoom(digits.images / 16.0, (1, 28 / 8, 28 / 8), order=1).clip(0.0, 1.0)
    x = images[..., None].astype("float32")
    y = digits.target.astype("int64")
    order = np.random.default_rng(seed).permutation(len(x))
    cut = int(len(x) * (1 - validation_fraction))
    train, val = order[:cut], order[cut:]
    return (x[train], y[train]), (x[val], y[val])


def article_model():
    """The article's Example 3 (Conv2D, BN, MaxPooling, Dropout(0.25), Conv2D, BN, Flatten,
    Dropout(0.5), Dense softmax), compiled with Adam and sparse categorical cross-entropy."""
    from regaudit.callbacks.demo.seed_models import cnn

    model = cnn()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model
