"""`regaudit report`, `runs` and `show` through click's CliRunner on real runs."""

import os
import re

import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from regaudit.answer.run_findings import findings
from regaudit.answer.grouped import grouped
from regaudit.cli import cli
from regaudit.read import load_runs
from regaudit.reports.html import words_before_figure
from regaudit.tracking.experiments import REPORT_TAG


def invoke(study, *args):
    # env: restores MLFLOW_TRACKING_URI after a command that sets it (--tracking-uri)
    return CliRunner().invoke(cli, list(args), env={"MLFLOW_TRACKING_URI": study["uri"]})


def find_all(*ids):
    runs = load_runs(list(ids))
    return findings(runs, runs.group())


def report_runs(ids):
    client = MlflowClient()
    experiments = [e.experiment_id for e in client.search_experiments()]
    return [r for r in client.search_runs(experiments) if r.data.tags.get(REPORT_TAG) == ",".join(ids)]


def test_report_on_one_run_writes_html_and_logs_it_into_that_run(study, tmp_path):
    run_id = study["runs"][("dropout+batchnorm", 0)]
    output = tmp_path / "one.html"
    result = invoke(study, "report", run_id, "-o", str(output))
    assert result.exit_code == 0, result.output
    text = output.read_text()
    for heading in ("Findings", "The article's claims, on these runs", "Overview",
                    "Activation statistics", "Covariate shift",
                    "Dropout ensembles", "Layers"):
        assert f">{heading}</h2>" in text, heading
    import re
    assert re.findall(r"<figure id=\"(\w+)\"", text) == [
        "learning_curves", "activation_heatmaps", "percentile_bands", "dead_and_saturated",
        "drift_per_layer", "batchnorm_shift", "acc_at_k"]
    assert "http://" not in text and "https://" not in text and "<script" not in text
    # one run's answer read in a minute: at most 300 words before the first figure, no id twice
    words = words_before_figure(text)
    assert 0 < len(words) <= 300, " ".join(words)
    ids = re.findall(r"\bRA\d{3}\b", " ".join(words))
    assert len(ids) == len(set(ids)), ids
    logged = [a.path for a in MlflowClient().list_artifacts(run_id, "regaudit/report")]
    assert logged == ["regaudit/report/one.html"]
    tags = MlflowClient().get_run(run_id).data.tags  # the answer in the runs table
    notices = {f"regaudit.finding.{g.id}" for g in grouped(find_all(run_id)) if g.level == "notice"}
    assert notices <= set(tags), (notices, sorted(tags))
    assert {f"regaudit.claim.RA25{i}" for i in range(1, 8)} <= set(tags), sorted(tags)
    experiment = MlflowClient().get_run(run_id).info.experiment_id
    assert (f"open it in the MLflow UI: http://127.0.0.1:5000/#/experiments/{experiment}/runs/"
            f"{run_id}/artifacts") in result.output


def test_report_on_two_runs_logs_a_comparison_run_tagged_with_both(study, tmp_path):
    ids = [study["runs"][("none", 0)], study["runs"][("dropout+batchnorm", 0)]]
    result = invoke(study, "report", *ids, "-o", str(tmp_path / "two.html"))
    assert result.exit_code == 0, result.output
    (comparison,) = report_runs(ids)
    assert comparison.info.experiment_id == MlflowClient().get_run(ids[0]).info.experiment_id
    assert [a.path for a in MlflowClient().list_artifacts(comparison.info.run_id, "regaudit/report")] == [
        "regaudit/report/two.html"]
    text = (tmp_path / "two.html").read_text()
    assert "no difference in val_accuracy between groups can be tested" in text  # one run per setup


def test_report_on_an_experiment_grouped_by_setup_tests_between_groups_in_markdown(study, tmp_path):
    output = tmp_path / "study.md"
    result = invoke(study, "report", "--experiment", study["experiment"], "--group-by", "setup",
                    "--format", "md", "-o", str(output), "--no-log")
    assert result.exit_code == 0, result.output
    text = output.read_text()
    assert "Welch t-test" in text and "Holm-adjusted" in text
    assert "'none'" in text and "'dropout+batchnorm'" in text
    pngs = sorted(os.listdir(tmp_path / "study_files"))
    assert "acc_at_k.png" in pngs and "learning_curves.png" in pngs and len(pngs) == 7
    for name in pngs:
        assert f"(study_files/{name})" in text
    # the XSS-named run is text, escaped for Markdown and HTML
    assert "<script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert report_runs(sorted(study["runs"].values())) == []  # --no-log


def test_runs_lists_audited_runs_and_show_prints_findings(study):
    listed = invoke(study, "runs", "--experiment", study["experiment"])
    assert listed.exit_code == 0, listed.output
    for run_id in study["runs"].values():
        assert run_id in listed.output
    assert study["plain"] not in listed.output
    run_id = study["runs"][("dropout+batchnorm", 1)]
    assert f" {study['experiment']} " in listed.output  # the experiment's name, not its id
    shown = invoke(study, "show", run_id)
    assert shown.exit_code == 0, shown.output
    assert shown.output.startswith(f"dropout+batchnorm-seed1 ({run_id})")
    assert "[RA203] Generalization gap: 1 group: lowest gen_gap_acc:" in shown.output


def test_show_json_gives_every_finding_with_its_id_level_text_and_numbers(study):
    import json

    result = invoke(study, "show", "--experiment", study["experiment"], "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["schema"] == "regaudit.findings/1" and data["group_by"] == "regaudit.setup"
    assert sorted(r["run_id"] for r in data["runs"]) == sorted(study["runs"].values())
    ids = [f["id"] for f in data["findings"]]
    assert {"RA201", "RA202", "RA203", "RA251", "RA257"} <= set(ids)
    for finding in data["findings"]:
        assert set(finding) == {"id", "rule", "level", "text", "about", "brief", "numbers"}
        assert finding["level"] in ("notice", "info") and finding["text"] and finding["brief"]
    # the grouped form: each finding but the answer and the claims in exactly one group of its id
    listed = [i for group in data["groups"] for i in group["findings"]]
    assert sorted(listed) == [i for i, f in enumerate(data["findings"])
                              if f["id"] != "RA260" and not f["id"].startswith("RA25")]
    assert all(data["findings"][i]["id"] == group["id"] for group in data["groups"]
               for i in group["findings"])
    assert len({g["id"] for g in data["groups"]}) == len(data["groups"])
    difference = next(f for f in data["findings"] if f["id"] == "RA202")
    assert difference["numbers"]["difference"] >= 0 and difference["numbers"]["family"] == 1
    assert 0 <= difference["numbers"]["p_holm"] <= 1


@pytest.mark.parametrize("case", ["unknown run", "not audited", "unreachable server", "no runs"])
def test_errors_are_one_line_on_stderr_with_a_non_zero_exit(study, case):
    args = {
        "unknown run": ["report", "f" * 32],
        "not audited": ["report", study["plain"]],
        "unreachable server": ["--tracking-uri", "http://127.0.0.1:9", "report", "abc"],
        "no runs": ["report"],
    }[case]
    result = invoke(study, *args)
    assert result.exit_code != 0
    assert "Traceback" not in result.output and result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("regaudit: "), result.stderr
    expected = {"unknown run": "was not found", "not audited": "has no regaudit data",
                "unreachable server": "could not read", "no runs": "no runs given"}[case]
    assert expected in lines[0]
