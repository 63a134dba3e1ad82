"""Where a report goes: logged back to MLflow (the MLflow UI address to open it at is
`regaudit.tracking.experiments.ui_address`)."""

import os

from regaudit import __version__
from regaudit.tracking.experiments import REPORT_TAG
from regaudit.schema import TAG_PREFIX

def log_report(report, runs, fmt="html", client=None, target=None):
    """Log the report to MLflow: into `target` when given (a study's parent run), into the
    run itself for one run, else into a new run in the first run's experiment tagged with
    the compared run ids. Returns the run id."""
    from mlflow.entities import RunTag
    from mlflow.tracking import MlflowClient

    from regaudit.answer.tags import answer_tags

    client = client or MlflowClient()
    ids = runs.run_ids
    given = target is not None
    if not given and len(ids) == 1:
        target = ids[0]
    elif not given:
        experiment = runs.runs["experiment_id"].iloc[0]
        created = client.create_run(
            experiment, run_name=f"regaudit-report-{len(ids)}-runs",
            tags={REPORT_TAG: ",".join(ids), TAG_PREFIX + "version": __version__,
                  "mlflow.note.content": f"regaudit comparison of {len(ids)} runs: "
                                          + ", ".join(ids)})
        target = created.info.run_id
    folder = "regaudit/report"
    client.log_artifact(target, report.path, artifact_path=folder)
    tags = answer_tags(report.findings)
    if tags:  # the answer in the runs table, without opening the report
        client.log_batch(target, tags=[RunTag(k, str(v)) for k, v in tags.items()])
    if fmt == "md":
        for path in report.figures:
            client.log_artifact(target, path, artifact_path=f"{folder}/{os.path.basename(os.path.dirname(path))}")
    if len(ids) > 1 and not given:
        client.set_terminated(target)
    return target


def log_run_report(run_id, client=None):
    """Build one run's report and log it into the run: the HTML into regaudit/report/,
    each figure as regaudit/plots/<name>.png. What the train-end thread and `regaudit sync`
    (for a run whose report could not be logged at train end) both do."""
    import tempfile

    from mlflow.tracking import MlflowClient

    from regaudit.read import load_run
    from regaudit.reports.report import build_report
    from regaudit.tracking.writer import RunWriter

    client = client or MlflowClient()
    with tempfile.TemporaryDirectory(prefix="regaudit-") as folder:
        runs = load_run(run_id, client)
        made = build_report(runs, os.path.join(folder, "report.html"))
        log_report(made, runs, client=client)
        writer = RunWriter(run_id, client)
        for stem, png in made.images:
            writer.log_png(png, f"{stem}.png")
    return made


def report_due(run_id, client):
    """Whether a run asked for its report at train end (tag `regaudit.report` = 1) and has
    none yet: the store was away then."""
    run = client.get_run(run_id)
    if run.data.tags.get(TAG_PREFIX + "report") != "1":
        return False
    return not any(item.path.endswith("report.html")
                   for item in client.list_artifacts(run_id, "regaudit/report"))
