"""A study in MLflow as a sweep is: one parent run with every trial a nested child.

The parent run is named after the study, tagged `regaudit.study` (the study id) and
`regaudit.study.role` = "parent"; its params are the design and the seeds policy; at the
end it holds the study's report (`regaudit/report/`), the recommendation
(`regaudit.recommendation`) and each claim's verdict (`regaudit.claim.RA25x`) as tags
(`regaudit.answer.tags`), so
the MLflow runs table shows the answer in one expandable row. Each trial is its child
through MLflow's own `mlflow.parentRunId` tag. A resumed study (`--study-id`) reopens its
parent rather than making a second one.
"""

from regaudit._version import __version__
from regaudit.answer.tags import answer_tags
from regaudit.schema import TAG_PREFIX
from regaudit.studies.runs import PARENT, ROLE_TAG, STUDY_TAG, study_runs


def open_parent(client, experiment_id, study_id, design, params):
    """The study's parent run id: the one a previous start of this study made (reopened),
    else a new one with `params` {name: value} logged."""
    from mlflow.entities import Param

    found = study_runs(client, experiment_id, study_id, parent=True)
    if found:
        run_id = found[0].info.run_id
        if found[0].info.status != "RUNNING":
            client.update_run(run_id, status="RUNNING")
        return run_id
    name = design if isinstance(design, str) and "/" not in design and "." not in design else "custom"
    run = client.create_run(experiment_id, run_name=f"regaudit study {study_id} ({name})",
                            tags={STUDY_TAG: study_id, ROLE_TAG: PARENT,
                                  TAG_PREFIX + "version": __version__,
                                  "mlflow.note.content": f"regaudit study {study_id}: its trials are the "
                                                         "child runs; the answer is in the tags and "
                                                         "regaudit/report/"})
    client.log_batch(run.info.run_id, params=[Param(k, str(v)[:6000]) for k, v in params.items()])
    return run.info.run_id


def close_parent(client, run_id, findings=(), status="FINISHED", extra=None):
    """Tag the parent with the answer and end it with `status`."""
    from mlflow.entities import RunTag

    tags = answer_tags(findings) | (extra or {})
    if tags:
        client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])
    client.set_terminated(run_id, status=status)
