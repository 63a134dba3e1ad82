"""A small real study for the report tests: the article's CNN without and with Dropout +
BatchNormalization, two seeds each, trained with RegAudit on a slice of the bundled
digits into the session's MLflow store; plus a run named like an XSS attack and a run
without regaudit data."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

EXPERIMENT = "report-tests"
XSS_NAME = "<script>alert(1)</script>"


@pytest.fixture(scope="session")
def study(mlflow_store):
    import keras
    import mlflow

    from regaudit.callbacks import RegAudit
    from regaudit.callbacks.demo import load_digits_28
    from regaudit.callbacks.demo.seed_models import cnn

    (x, y), (xv, yv) = load_digits_28(0)
    x, y, xv, yv = x[:192], y[:192], xv[:64], yv[:64]
    mlflow.set_experiment(EXPERIMENT)
    runs, histories = {}, {}
    for seed in (0, 1):
        for setup, flags in (("none", (False, False)), ("dropout+batchnorm", (True, True))):
            keras.utils.set_random_seed(seed)
            model = cnn(dropout=flags[0], batchnorm=flags[1])
            model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
            name = XSS_NAME if (seed, setup) == (1, "none") else f"{setup}-seed{seed}"
            with mlflow.start_run(run_name=name) as run:
                histories[(setup, seed)] = model.fit(x, y, validation_data=(xv, yv), epochs=2, batch_size=32, verbose=0,
                          callbacks=[RegAudit(seed=seed, probe_size=64, mc_samples=4,
                                              ensemble_probe_size=32, report=False)]).history
            runs[(setup, seed)] = run.info.run_id
            keras.backend.clear_session()
    with mlflow.start_run(run_name="not audited") as plain:
        mlflow.log_metric("loss", 1.0)
    return {"runs": runs, "histories": histories, "plain": plain.info.run_id, "uri": mlflow_store,
            "experiment": EXPERIMENT}
