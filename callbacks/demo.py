"""`regaudit demo`: the seed article's study on real data.

The data is scikit-learn's bundled handwritten digits (1,797 images, no download),
upsampled from 8x8 to MNIST's 28x28 so the article's models run unchanged. The study
trains the article's third model in its four setups (no regularization, Dropout only,
BatchNormalization only, both) with several seeds each, every run audited by `RegAudit`.
"""

import warnings

import numpy as np

from regaudit.errors import RegauditWarning

DEMO_EXPERIMENT = "regaudit-demo"
#: (setup name, dropout, batchnorm) of the seed article's comparison
SETUPS = (("none", False, False), ("dropout", True, False), ("batchnorm", False, True),
          ("dropout+batchnorm", True, True))


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


def train_one(dropout, batchnorm, seed, epochs, data, callbacks=(), batch_size=16):
    """Train the article's CNN in one setup with `RegAudit` inside an MLflow run of the
    demo experiment; return the run id."""
    import keras
    import mlflow

    from regaudit.callbacks import RegAudit
    from regaudit.callbacks.seed_models import cnn

    (x_train, y_train), (x_val, y_val) = data
    keras.utils.set_random_seed(seed)
    model = cnn(dropout=dropout, batchnorm=batchnorm)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    mlflow.set_experiment(DEMO_EXPERIMENT)
    with mlflow.start_run(run_name=f"{model.name}-seed{seed}") as run, warnings.catch_warnings():
        # the setups without Dropout have no ensemble on purpose
        warnings.filterwarnings("ignore", ".*has no noise source.*", RegauditWarning)
        mlflow.log_params({"epochs": epochs, "seed": seed, "model": model.name,
                           "batch_size": batch_size})
        model.fit(x_train, y_train, validation_data=(x_val, y_val), epochs=epochs,
                  batch_size=batch_size, verbose=0,
                  callbacks=[RegAudit(seed=seed, report=False), *callbacks])
    keras.backend.clear_session()
    return run.info.run_id


def run_study(epochs=6, seeds=(0, 1), progress=None, on_run=None):
    """Every setup of SETUPS with every seed; `progress()` after each epoch,
    `on_run(setup, seed, seconds)` after each run. Returns the run ids in training order."""
    import time

    import keras

    class Progress(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if progress is not None:
                progress()

    data = load_digits_28(0)
    run_ids = []
    for seed in seeds:
        for setup, dropout, batchnorm in SETUPS:
            started = time.perf_counter()
            run_ids.append(train_one(dropout, batchnorm, seed, epochs, data, [Progress()]))
            if on_run is not None:
                on_run(setup, seed, time.perf_counter() - started)
    return run_ids


def run_demo(epochs=10, seed=0, echo=print):
    """Train the seed article's third model (Dropout and BatchNormalization) once with
    `RegAudit`; return the run id."""
    echo(f"training the article's CNN on digits for {epochs} epochs ...")
    return train_one(True, True, seed, epochs, load_digits_28(seed))
