"""Covariate shift on real Keras models: closed forms for the BatchNormalization variance
shift and gradient ICS, and a training run recomputed with numpy/scipy."""

import keras
import numpy as np
import pytest
from keras import layers
from mlflow.tracking import MlflowClient
from scipy import stats

from regaudit import CovariateShift, RegAudit
from regaudit.tracking.artifacts import download_tables

from model_zoo import data_for, tap_outputs
from test_invariants import model_state


def audit_once(model, x, y=None, **options):
    """One audit (the one before training) of `model` on the probe `x`; its shift table."""
    callback = RegAudit(probe=(x,) if y is None else (x, y), strict=True, probe_batch_size=256, **options)
    callback.set_model(model)
    callback.on_train_begin()
    callback.on_epoch_begin(0)  # the audit before the first step runs here, as in fit
    callback.on_train_end()
    return callback, download_tables(callback.run_id)["shift"].set_index(["layer", "measure"])["value"]


def dense_dropout_batchnorm(rate, dropout_first):
    keras.utils.set_random_seed(1)
    inputs = keras.Input((16,))
    hidden = layers.Dense(32, use_bias=False, name="dense")(inputs)
    if dropout_first:
        out = layers.BatchNormalization(name="bn")(layers.Dropout(rate, name="drop")(hidden))
    else:
        out = layers.Dropout(rate, name="drop")(layers.BatchNormalization(name="bn")(hidden))
    return keras.Model(inputs, layers.Dense(3, name="head")(out))


@pytest.mark.parametrize("rate", [0.2, 0.5])
def test_dropout_before_batchnorm_shifts_its_variance_by_one_over_keep(rate, rng):
    x = rng.normal(size=(2000, 16)).astype("float32")  # zero-mean inputs to the Dropout
    _, before = audit_once(dense_dropout_batchnorm(rate, dropout_first=True), x)
    assert before[("bn", "bn_dropout_var_ratio")] == pytest.approx(1 / (1 - rate), rel=0.05)
    _, after = audit_once(dense_dropout_batchnorm(rate, dropout_first=False), x)
    assert after[("bn", "bn_dropout_var_ratio")] == pytest.approx(1.0, abs=1e-12)


def test_bn_var_ratio_is_one_when_moving_statistics_come_from_the_probe(rng):
    model = dense_dropout_batchnorm(0.3, dropout_first=False)
    x = rng.normal(size=(1000, 16)).astype("float32")
    bn_input = keras.Model(model.inputs, model.get_layer("dense").output).predict(x, verbose=0)
    bn = model.get_layer("bn")
    bn.moving_mean.assign(bn_input.astype(np.float64).mean(0))
    bn.moving_variance.assign(bn_input.astype(np.float64).var(0))
    _, table = audit_once(model, x)
    assert table[("bn", "bn_var_ratio")] == pytest.approx(1.0, rel=0.05)
    assert table[("bn", "bn_var_ratio")] == pytest.approx(1.0, rel=1e-5)
    assert table[("bn", "bn_mean_offset")] == pytest.approx(0.0, abs=1e-5)


def test_gradient_ics_matches_hand_written_gradients_and_changes_nothing(rng):
    keras.utils.set_random_seed(2)
    inputs = keras.Input((3,))
    hidden = layers.Dense(4, use_bias=False, name="first")(inputs)
    model = keras.Model(inputs, layers.Dense(2, use_bias=False, name="second")(hidden))
    lr = 0.1
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=lr), loss="mse")
    x = rng.normal(size=(64, 3)).astype("float32")
    y = rng.normal(size=(64, 2)).astype("float32")
    model.fit(x, y, epochs=1, verbose=0)  # builds the optimizer's state
    before = model_state(model)

    w1 = model.get_layer("first").kernel.numpy().astype(np.float64)
    w2 = model.get_layer("second").kernel.numpy().astype(np.float64)
    X, Y, n = x.astype(np.float64), y.astype(np.float64), len(x)

    def grads(w1, w2):  # mse: mean over the 2 outputs and the batch
        d_pred = 2 * (X @ w1 @ w2 - Y) / (n * 2)
        return X.T @ d_pred @ w2.T, (X @ w1).T @ d_pred

    g1, g2 = grads(w1, w2)
    _, g2_moved = grads(w1 - lr * g1, w2)
    callback, table = audit_once(model, x, y, gradient_ics=True)
    assert table[("second", "ics_l2")] == pytest.approx(np.linalg.norm(g2 - g2_moved), rel=1e-4)
    cosine = np.sum(g2 * g2_moved) / np.linalg.norm(g2) / np.linalg.norm(g2_moved)
    assert table[("second", "ics_cos")] == pytest.approx(cosine, rel=1e-5)
    assert table[("first", "ics_l2")] == 0.0  # no earlier layer moves
    assert table[("first", "ics_cos")] == pytest.approx(1.0)

    after = model_state(model)
    for key in before:
        np.testing.assert_array_equal(before[key], after[key], err_msg=key)


class Recorder(keras.callbacks.Callback):
    """After the audit of each epoch: the tapped tensors of both probes (Keras
    sub-models) and the BN moving statistics the audit saw."""

    def __init__(self, audit):
        super().__init__()
        self.audit, self.seen = audit, {}

    def capture(self):
        return {
            "val": tap_outputs(self.model, self.audit.probe_pass.probe.inputs),
            "train": tap_outputs(self.model, self.audit.probe_pass.train_probe.inputs),
            "bn": {layer.name: (layer.moving_mean.numpy(), layer.moving_variance.numpy())
                   for layer in self.model.layers if isinstance(layer, layers.BatchNormalization)},
        }

    def on_train_begin(self, logs=None):
        self.seen[0] = self.capture()

    def on_epoch_end(self, epoch, logs=None):
        self.seen[epoch + 1] = self.capture()


def reservoir(values, rows):
    flat = values.reshape(len(values), -1).astype(np.float64)
    return flat[np.arange(len(values))[:, None], rows[: len(values)]].ravel()


def per_unit(values):
    units = values.reshape(-1, values.shape[-1]).astype(np.float64)
    return units.mean(0), units.std(0)


def test_shift_measures_in_mlflow_equal_numpy_on_the_same_probe_tensors(tiny_model, rng):
    model = tiny_model("dropout_batchnorm_cnn")
    x, y = data_for(model, 160, rng)
    xv, yv = data_for(model, 48, rng)
    audit = RegAudit(strict=True)
    recorder = Recorder(audit)
    model.fit(x, y, epochs=2, batch_size=32, validation_data=(xv, yv),
              callbacks=[audit, recorder], verbose=0)
    assert audit.probe_pass.train_probe.size == 48 and audit.probe_pass.train_probe.source == "train"

    table = download_tables(audit.run_id)["shift"]
    final = table[table.epoch == 2].set_index(["layer", "measure"])["value"]
    assert set(table[table.epoch == 0].measure) <= {"bn_var_ratio", "bn_mean_offset", "bn_init_share",
        "bn_dropout_var_ratio", "tv_w1", "tv_ks", "tv_p", "tv_units_shifted"}  # no drift yet
    assert set(table[table.measure == "tv_w1"].probe) == {"train|val"}
    now, previous, first = recorder.seen[2], recorder.seen[1], recorder.seen[0]
    for tap in audit.probe_pass.taps:
        rows = audit.probe_pass.reservoir_index[tap.name]
        current = now["val"][tap.name]
        res_now = reservoir(current, rows)
        for suffix, reference in (("", previous), ("_from_start", first)):
            old = reference["val"][tap.name]
            res_old = reservoir(old, rows)
            scale = old.astype(np.float64).std()
            assert final[(tap.name, "drift_w1" + suffix)] == pytest.approx(
                stats.wasserstein_distance(res_old, res_now) / scale, rel=1e-5, abs=1e-9)
            assert final[(tap.name, "drift_ks" + suffix)] == pytest.approx(
                stats.ks_2samp(res_old, res_now).statistic, rel=1e-5, abs=1e-9)
            mu0, sd0 = per_unit(old)
            mu1, sd1 = per_unit(current)
            alive = sd0 > 1e-12
            both = alive & (sd1 > 1e-12)
            assert final[(tap.name, "drift_mean" + suffix)] == pytest.approx(
                np.mean(np.abs(mu1 - mu0)[alive] / sd0[alive]), rel=1e-5, abs=1e-9)
            assert final[(tap.name, "drift_logvar" + suffix)] == pytest.approx(
                np.mean(np.abs(np.log(sd1[both] ** 2 / sd0[both] ** 2))), rel=1e-5, abs=1e-9)
        train = now["train"][tap.name]
        res_train = reservoir(train, rows)
        assert final[(tap.name, "tv_w1")] == pytest.approx(
            stats.wasserstein_distance(res_train, res_now) / train.astype(np.float64).std(), rel=1e-5)
        assert final[(tap.name, "tv_ks")] == pytest.approx(stats.ks_2samp(res_train, res_now).statistic, rel=1e-5)
        units = tap.shape[-1]
        unit_of = (rows[:48] % units).ravel()
        pvalues = []
        for unit in range(units):
            a, b = res_train[unit_of == unit], res_now[unit_of == unit]
            if a.size >= 2 and b.size >= 2:
                d = stats.ks_2samp(a, b).statistic
                pvalues.append(stats.kstwobign.sf(d * np.sqrt(a.size * b.size / (a.size + b.size))))
        assert final[(tap.name, "tv_p")] == pytest.approx(min(1.0, len(pvalues) * min(pvalues)), rel=1e-4, abs=1e-12)

    for bn, source in (("batch_normalization", "conv2d"), ("batch_normalization_1", "conv2d_1")):
        moving_mean, moving_variance = now["bn"][bn]
        mean, std = per_unit(now["val"][source])
        assert final[(bn, "bn_var_ratio")] == pytest.approx(np.mean(std**2 / moving_variance), rel=1e-5)
        epsilon = model.get_layer(bn).epsilon
        assert final[(bn, "bn_mean_offset")] == pytest.approx(
            np.mean(np.abs(mean - moving_mean) / np.sqrt(moving_variance + epsilon)), rel=1e-5)
        assert np.isfinite(final[(bn, "bn_dropout_var_ratio")])
        steps = int(model.optimizer.iterations.numpy())  # 2 epochs of 3 steps
        share = np.minimum(1.0, model.get_layer(bn).momentum ** steps / moving_variance)
        assert final[(bn, "bn_init_share")] == pytest.approx(np.median(share), rel=1e-6)  # float32 state

    drift = [final[(t.name, "drift_w1")] for t in audit.probe_pass.taps]
    assert final[("model", "drift_w1_mean")] == pytest.approx(np.mean(drift), rel=1e-12)
    client = MlflowClient()
    metrics = client.get_run(audit.run_id).data.metrics
    for key in ("regaudit/conv2d/drift_w1", "regaudit/conv2d/tv_w1", "regaudit/model/drift_w1_mean",
                "regaudit/batch_normalization/bn_var_ratio", "regaudit/batch_normalization_1/bn_dropout_var_ratio"):
        assert key in metrics, key
    history = client.get_metric_history(audit.run_id, "regaudit/conv2d/drift_w1")
    assert [m.step for m in history] == [1, 2]
    assert history[-1].value == pytest.approx(final[("conv2d", "drift_w1")])


def test_covariate_shift_alone_logs_only_its_family(tiny_model, rng):
    model = tiny_model("dropout_mlp")
    x, y = data_for(model, 64, rng)
    callback = CovariateShift(probe_size=32)
    model.fit(x, y, epochs=2, validation_split=0.25, callbacks=[callback], verbose=0)
    metrics = MlflowClient().get_run(callback.run_id).data.metrics
    assert "regaudit/dense/drift_w1" in metrics and "regaudit/dense/tv_w1" in metrics
    assert "regaudit/dense/mean" not in metrics
    tables = download_tables(callback.run_id)
    assert "shift" in tables and "activations" in tables  # the activations part holds only audit_seconds
    assert set(tables["activations"].measure) == {"audit_seconds"}
