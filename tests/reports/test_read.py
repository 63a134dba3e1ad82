"""The read API on real audited runs: tidy tables from one download per run."""

import pytest
from mlflow.tracking import MlflowClient

import regaudit
from regaudit.errors import RegauditError
from regaudit.schema import COLUMNS


def test_load_run_returns_every_table_in_long_form(study):
    run_id = study["runs"][("dropout+batchnorm", 0)]
    runs = regaudit.load_run(run_id)
    assert runs.run_ids == [run_id]
    for name in ("activations", "shift", "ensemble", "history"):
        table = getattr(runs, name)
        assert list(table.columns) == list(COLUMNS), name
        assert len(table) and set(table.run) == {run_id}, name
    history = runs.history
    assert {"loss", "val_loss", "accuracy", "val_accuracy", "epoch_seconds"} <= set(history.measure)
    assert sorted(set(history.epoch)) == [1, 2]
    logged = study["histories"][("dropout+batchnorm", 0)]  # what Keras' History holds
    for measure in ("loss", "val_accuracy"):
        got = history[history.measure == measure].sort_values("epoch").value.tolist()
        assert got == pytest.approx(logged[measure], rel=1e-6), measure
    assert set(runs.activations.epoch) == {0, 1, 2}
    assert "conv2d" in set(runs.layers.name) and set(runs.layers.run) == {run_id}
    tags = runs.tags.set_index("key")["value"]
    assert tags["regaudit.setup"] == "dropout+batchnorm"
    assert runs.runs.loc[0, "params_count"] > 0 and runs.runs.loc[0, "final"]["val_accuracy"] >= 0


def test_load_runs_downloads_once_per_run_and_never_reads_metric_histories(study, monkeypatch):
    """One read per run: the experiment's search gives each run's record (no `get_run`),
    one download of its regaudit/ folder gives its tables, no metric history is read."""
    import regaudit.tracking.artifacts

    calls = {"download": 0, "history": 0, "get_run": 0}
    original = regaudit.tracking.artifacts._download

    def counting(*args, **kwargs):
        calls["download"] += 1
        return original(*args, **kwargs)

    def history(self, *args, **kwargs):
        calls["history"] += 1
        raise AssertionError("a metric history was requested")

    get_run = MlflowClient.get_run

    def counted_get_run(self, *args, **kwargs):
        calls["get_run"] += 1
        return get_run(self, *args, **kwargs)

    monkeypatch.setattr(regaudit.tracking.artifacts, "_download", counting)
    monkeypatch.setattr(MlflowClient, "get_metric_history", history)
    monkeypatch.setattr(MlflowClient, "get_run", counted_get_run)
    runs = regaudit.load_runs(experiment=study["experiment"])
    assert calls == {"download": 4, "history": 0, "get_run": 0}
    assert sorted(runs.run_ids) == sorted(study["runs"].values())
    assert set(runs.activations.run) == set(runs.run_ids)
    groups = runs.group()
    assert sorted(set(groups.values())) == ["dropout+batchnorm", "none"]
    assert set(runs.group("no.such.tag").values()) == {"(none)"}


def test_unknown_and_unaudited_runs_are_one_line_errors(study):
    with pytest.raises(RegauditError, match="was not found") as unknown:
        regaudit.load_run("0" * 32)
    assert "\n" not in str(unknown.value)
    with pytest.raises(RegauditError, match="has no regaudit data") as plain:
        regaudit.load_run(study["plain"])
    assert "\n" not in str(plain.value)


def test_runs_display_a_light_summary_in_jupyter_made_once(study):
    runs = regaudit.load_runs(list(study["runs"].values()))
    page = runs._repr_html_()
    # the answer and a table, a few KB: no figure, no script, no embedded report
    assert len(page.encode()) < 20_000, len(page.encode())
    assert "<img" not in page and "<iframe" not in page and "<script" not in page.lower()
    assert "Dropout reduces overfitting" in page and "regaudit report " in page
    assert runs._repr_html_() is page  # made once, not on every display
    one = regaudit.load_run(study["runs"][("dropout+batchnorm", 0)])
    summary = one._repr_html_()
    assert f"/runs/{study['runs'][('dropout+batchnorm', 0)]}/artifacts" in summary  # the full report
