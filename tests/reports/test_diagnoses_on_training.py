"""A diagnosis on real training: the seed article's CNN with BatchNormalization trained
for too few steps at Keras' default momentum 0.99 (its moving statistics lag the data)
beside the same CNN without BN. The report must connect BN's lower validation accuracy
to `bn_var_ratio` and give the remedy."""

import re

import keras
import mlflow

from regaudit.callbacks import RegAudit
from regaudit.callbacks.demo import load_digits_28
from regaudit.callbacks.demo.seed_models import cnn
from regaudit.read import load_runs
from regaudit.reports.report import build_report


def test_lagging_batchnorm_statistics_are_connected_to_the_lower_validation(tmp_path):
    (x, y), (xv, yv) = load_digits_28(0)
    x, y, xv, yv = x[:320], y[:320], xv[:200], yv[:200]
    mlflow.set_experiment("bn-lag")
    ids = []
    for seed in (0, 1, 2):
        for batchnorm in (False, True):
            keras.utils.set_random_seed(seed)
            model = cnn(dropout=False, batchnorm=batchnorm)
            model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
            with mlflow.start_run() as run:  # 2 epochs of 20 steps: 40 steps at momentum 0.99
                model.fit(x, y, validation_data=(xv, yv), epochs=2, batch_size=16, verbose=0,
                          callbacks=[RegAudit(seed=seed, probe_size=64, report=False)])
            ids.append(run.info.run_id)
            keras.backend.clear_session()
    runs = load_runs(ids)
    report = build_report(runs, str(tmp_path / "report.html"))
    lags = [f for f in report.findings if f.id == "RA210"]  # one per lagging BN layer
    assert lags and lags[0].numbers["layer"].startswith("batch_normalization")
    lag = lags[0]
    numbers = lag.numbers
    assert numbers["group"] == "batchnorm" and numbers["momentum"] == 0.99 and numbers["steps"] == 40
    assert numbers["initial_share_left"] == 0.99**40 and numbers["bn_init_share"] > 0.5
    assert numbers["steps_needed"] > 40
    assert all(ratio < 0.8 for ratio in numbers["bn_var_ratio"].values())
    assert numbers["worse"] and numbers["significant"] and numbers["reference_group"] == "none"
    assert re.search(r"'batchnorm' validates worse than 'none', the same setup without BatchNormalization \(val_accuracy", lag.text)
    assert "BatchNormalization(momentum=0.9)" in lag.text and "(bn_init_share)" in lag.text
    assert f"train for {numbers['steps_needed']} steps or more" in lag.text
    html = (tmp_path / "report.html").read_text()
    assert "RA210" in html and "statistics lag the data" in html
    verdicts = {f.id: f.numbers["verdict"] for f in report.findings if f.id.startswith("RA25")}
    assert sorted(verdicts) == ["RA251", "RA252", "RA253", "RA254", "RA255", "RA256", "RA257"]
    assert "The article's claims, on these runs" in html and "2025-01-30" in html
