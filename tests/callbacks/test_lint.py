"""`regaudit.lint`: each rule fires on a small model built to break it and stays quiet on
its fixed version, inside custom layers and subclassed models too; the CLI on the seed
article's models saved as .keras files; the lint RegAudit stores at train begin."""

import json
import subprocess
import sys

import keras
import numpy as np
import pytest
from keras import layers

import regaudit
from regaudit.model.lint_rules import RULE_IDS


def ids(model, **options):
    return sorted((f.id, f.layer) for f in regaudit.lint(model, **options))


def seq(*stack, shape=(8,)):
    return keras.Sequential([keras.Input(shape), *stack])


class DropBN(layers.Layer):
    """A custom block as keras.io writes them: Dropout, then Dense, then BatchNormalization."""

    def __init__(self, rate=0.3, **kwargs):
        super().__init__(**kwargs)
        self.drop = layers.Dropout(rate)
        self.dense = layers.Dense(8, use_bias=False)
        self.bn = layers.BatchNormalization()

    def call(self, x, training=False):
        return self.bn(self.dense(self.drop(x, training=training)), training=training)


class BNThenDrop(DropBN):
    def call(self, x, training=False):
        return self.drop(self.bn(self.dense(x), training=training), training=training)


class Subclassed(keras.Model):
    def __init__(self, rate, bn_first, **kwargs):
        super().__init__(**kwargs)
        self.dense = layers.Dense(8, activation="relu")
        self.bn = layers.BatchNormalization()
        self.drop = layers.Dropout(rate)
        self.out = layers.Dense(3)
        self.bn_first = bn_first

    def call(self, x, training=False):
        x = self.dense(x)
        if self.bn_first:
            return self.out(self.drop(self.bn(x, training=training), training=training))
        return self.out(self.bn(self.drop(x, training=training), training=training))


def subclassed(rate=0.3, bn_first=False):
    model = Subclassed(rate, bn_first)
    model(np.zeros((2, 8), "float32"))  # built, as after fit
    return model


BROKEN_AND_FIXED = {
    "RA101": (lambda: seq(layers.Dense(8), layers.Dropout(0.3), layers.Dense(8, use_bias=False),
                          layers.BatchNormalization(name="bn"), layers.Dense(2)),
              lambda: seq(layers.Dense(8, use_bias=False), layers.BatchNormalization(name="bn"),
                          layers.Dropout(0.3), layers.Dense(2))),
    "RA102": (lambda: seq(layers.Dense(8, activation="relu"), layers.BatchNormalization(name="bn")),
              lambda: seq(layers.Dense(8, use_bias=False), layers.BatchNormalization(name="bn"),
                          layers.Activation("relu"))),
    "RA103": (lambda: seq(layers.Dense(8), layers.Dropout(0.0, name="off"), layers.Dense(2)),
              lambda: seq(layers.Dense(8), layers.Dropout(0.2, name="off"), layers.Dense(2))),
    "RA104": (lambda: seq(layers.Dense(8), layers.Dropout(0.9, name="heavy"), layers.Dense(2)),
              lambda: seq(layers.Dense(8), layers.Dropout(0.5, name="heavy"), layers.Dense(2))),
    "RA105": (lambda: seq(layers.Dense(3, activation="softmax"), layers.Dropout(0.2, name="late")),
              lambda: seq(layers.Dropout(0.2, name="late"), layers.Dense(3, activation="softmax"))),
    "RA106": (lambda: seq(layers.Dense(8, name="biased"), layers.BatchNormalization()),
              lambda: seq(layers.Dense(8, use_bias=False, name="biased"), layers.BatchNormalization())),
    "RA107": (lambda: seq(layers.Dense(8, use_bias=False), layers.BatchNormalization(name="bn")),
              lambda: seq(layers.Dense(8, use_bias=False), layers.LayerNormalization(name="bn"))),
    "RA108": (lambda: seq(layers.Conv2D(4, 3), layers.Dropout(0.3, name="drop"), layers.Flatten(),
                          layers.Dense(2), shape=(8, 8, 1)),
              lambda: seq(layers.Conv2D(4, 3), layers.SpatialDropout2D(0.3, name="drop"),
                          layers.Flatten(), layers.Dense(2), shape=(8, 8, 1))),
    "RA109": (lambda: seq(layers.Dense(8, use_bias=False), layers.BatchNormalization(name="bn")),
              lambda: seq(layers.Dense(8, use_bias=False),
                          layers.BatchNormalization(momentum=0.9, name="bn"))),
}
OPTIONS = {"RA107": {"batch_size": 8}, "RA109": {"steps": 200}}
WHERE = {"RA101": "bn", "RA102": "bn", "RA103": "off", "RA104": "heavy", "RA105": "late",
         "RA106": "biased", "RA107": "bn", "RA108": "drop", "RA109": "bn"}


@pytest.mark.parametrize("rule", sorted(BROKEN_AND_FIXED))
def test_each_rule_fires_on_its_broken_model_and_not_on_the_fixed_one(rule):
    broken, fixed = BROKEN_AND_FIXED[rule]
    options = OPTIONS.get(rule, {})
    found = regaudit.lint(broken(), **options)
    hits = [f for f in found if f.id == rule]
    assert [f.layer for f in hits] == [WHERE[rule]], found
    finding = hits[0]
    assert finding.severity in ("error", "warning", "info") and finding.source
    assert len(finding.message.splitlines()) == 1 and finding.message.endswith(".")
    assert rule not in {f.id for f in regaudit.lint(fixed(), **options)}
    assert rule not in {f.id for f in regaudit.lint(broken(), ignore={rule}, **options)}


def test_every_rule_has_a_test_and_a_documented_threshold():
    from regaudit.model import lint_rules

    assert set(BROKEN_AND_FIXED) == RULE_IDS
    for rule in lint_rules.RULES:
        assert rule.__doc__.lstrip().startswith("RA1") and "Source" in rule.__doc__


def test_rules_find_regularizers_inside_custom_layers_and_subclassed_models():
    inputs = keras.Input((8,))
    model = keras.Model(inputs, layers.Dense(2)(DropBN(name="block")(inputs)))
    assert any(i == "RA101" and l.startswith("block/batch_normalization") for i, l in ids(model))
    fixed = keras.Model(inputs, layers.Dense(2)(BNThenDrop(name="block")(inputs)))
    assert not any(i == "RA101" for i, _ in ids(fixed))
    broken_sub = [f for f in regaudit.lint(subclassed()) if f.id == "RA101"]
    assert len(broken_sub) == 1 and "Dropout" in broken_sub[0].message
    assert not any(f.id == "RA101" for f in regaudit.lint(subclassed(bn_first=True)))
    # attention and RNN dropout are read wherever they sit
    tokens = keras.Input((5, 8))
    attention = layers.MultiHeadAttention(2, 4, dropout=0.95, name="mha")(tokens, tokens)
    rnn = layers.LSTM(4, dropout=0.1, recurrent_dropout=0.92, name="lstm")(attention)
    found = ids(keras.Model(tokens, rnn))
    assert ("RA104", "lstm/recurrent_dropout") in found
    assert any(i == "RA104" and l.startswith("mha/") for i, l in found)


def test_lint_rejects_a_non_model_and_unknown_rule_ids():
    with pytest.raises(regaudit.UsageError, match="expected a keras.Model"):
        regaudit.lint("model.keras")
    with pytest.raises(regaudit.UsageError, match="unknown rule id"):
        regaudit.lint(seq(layers.Dense(2)), ignore={"RA999"})


def lint_cli(*args, cwd=None):
    """`regaudit lint ...` as a user runs it: a subprocess (the exit code, stdout and
    stderr as the shell sees them)."""
    return subprocess.run([sys.executable, "-m", "regaudit", "lint", *args], capture_output=True,
                          text=True, timeout=300, cwd=cwd)


class Result:
    def __init__(self, invoked):
        self.returncode = invoked.exit_code
        self.stdout, self.stderr = invoked.stdout, invoked.stderr


def lint_here(*args, cwd=None, monkeypatch=None):
    """The same command in this process (Keras is imported already: seconds, not tens)."""
    from click.testing import CliRunner

    from regaudit.cli import cli

    if cwd is not None:
        monkeypatch.chdir(cwd)
    return Result(CliRunner().invoke(cli, ["lint", *args]))


@pytest.fixture(scope="module")
def seed_files(tmp_path_factory):
    from regaudit.callbacks.demo import seed_models

    folder = tmp_path_factory.mktemp("seed")
    paths = {}
    for build in (seed_models.dropout_mlp, seed_models.batchnorm_cnn, seed_models.dropout_batchnorm_cnn):
        keras.backend.clear_session()
        paths[build.__name__] = str(folder / f"{build.__name__}.keras")
        build().save(paths[build.__name__])
    return paths


#: the JSON of `regaudit lint --json`, as the README documents it
SCHEMA = {"schema": str, "model": str, "target": str, "counts": dict, "findings": list}
FINDING = {"id": str, "rule": str, "severity": str, "layer": str, "message": str, "source": str}


def test_cli_on_the_seed_articles_models(seed_files):
    clean = lint_here(seed_files["dropout_mlp"])
    assert clean.returncode == 0 and clean.stdout.startswith("dropout_mlp: 0 findings"), clean.stderr
    info = lint_here(seed_files["batchnorm_cnn"])
    assert info.returncode == 0  # info only: below the default --fail-on warning
    assert "RA102 batch_normalization: BatchNormalization batch_normalization normalizes the output " \
           "of conv2d after its relu" in info.stdout
    both = lint_cli(seed_files["dropout_batchnorm_cnn"], "--json")
    assert both.returncode == 1 and both.stderr == ""
    data = json.loads(both.stdout)
    assert {k: type(v) for k, v in data.items()} == SCHEMA and data["schema"] == "regaudit.lint/1"
    for finding in data["findings"]:
        assert {k: type(v) for k, v in finding.items()} == FINDING
    assert data["counts"] == {"error": 0, "warning": 1, "info": 3}
    found = [(f["id"], f["layer"]) for f in data["findings"]]
    assert found == [("RA101", "batch_normalization_1"), ("RA102", "batch_normalization"),
                     ("RA108", "dropout"), ("RA102", "batch_normalization_1")]
    quiet = lint_here(seed_files["dropout_batchnorm_cnn"], "--ignore", "RA101,RA102", "--ignore", "RA108")
    assert quiet.returncode == 0 and ": 0 findings" in quiet.stdout
    assert lint_here(seed_files["dropout_batchnorm_cnn"], "--fail-on", "error").returncode == 0
    steps = lint_here(seed_files["batchnorm_cnn"], "--steps", "100", "--batch-size", "8", "--json")
    assert {f["id"] for f in json.loads(steps.stdout)["findings"]} == {"RA102", "RA107", "RA109"}


def test_cli_builds_from_module_function_and_errors_are_one_line(tmp_path, monkeypatch):
    (tmp_path / "builders.py").write_text(
        "import keras\n"
        "def good():\n"
        "    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(2),"
        " keras.layers.Dropout(0.95)])\n"
        "def broken():\n"
        "    raise RuntimeError('no weights here')\n"
        "def wrong():\n"
        "    return 3\n")
    (tmp_path / "junk.keras").write_text("not a zip")
    good = lint_here("builders:good", cwd=tmp_path, monkeypatch=monkeypatch)
    assert good.returncode == 1 and "RA104 dropout" in good.stdout and "RA105 dropout" in good.stdout
    for args, expected in ((["missing.keras"], "no such file: missing.keras"),
                           (["junk.keras"], "junk.keras is not a .keras file"),
                           (["builders:broken"], "builders:broken() raised RuntimeError: no weights here"),
                           (["builders:wrong"], "returned int, expected a keras.Model"),
                           (["nomodule:f"], "cannot import nomodule:f"),
                           (["builders:good", "--ignore", "RA1"], "unknown rule id(s) RA1")):
        # the first error through a real subprocess, the others in this process
        result = (lint_cli(*args, cwd=tmp_path) if args == ["missing.keras"]
                  else lint_here(*args, cwd=tmp_path, monkeypatch=monkeypatch))
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1, result.stderr
        assert lines[0].startswith("regaudit lint: ") and expected in lines[0], lines[0]
        assert result.stdout == ""


def test_regaudit_lints_at_train_begin_and_the_report_sets_it_beside_the_measure(tmp_path):
    from mlflow.tracking import MlflowClient

    from regaudit.callbacks import RegAudit
    from regaudit.callbacks.demo.seed_models import dropout_batchnorm_cnn
    from regaudit.reports.report import build_report

    rng = np.random.default_rng(0)
    x, y = rng.random((64, 28, 28, 1)).astype("float32"), rng.integers(0, 10, 64)
    model = dropout_batchnorm_cnn()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    callback = RegAudit(probe_size=32, mc_samples=4, ensemble_probe_size=16, report=False)
    model.fit(x, y, validation_split=0.25, epochs=1, batch_size=16, verbose=0, callbacks=[callback])
    tags = MlflowClient().get_run(callback.run_id).data.tags
    assert (tags["regaudit.lint.error"], tags["regaudit.lint.warning"]) == ("0", "3")  # RA101, RA109 x 2
    runs = regaudit.load_run(callback.run_id)
    assert sorted(set(runs.lint.id)) == ["RA101", "RA102", "RA108", "RA109"]
    report = build_report(runs, str(tmp_path / "r.html"))
    html = (tmp_path / "r.html").read_text()
    assert "Architecture lint, and what was measured there" in html
    ratio = runs.shift.query("measure == 'bn_dropout_var_ratio' and layer == 'batch_normalization_1'").value.iloc[-1]
    assert f"bn_dropout_var_ratio {ratio:.3g}" in html
    assert report.findings
