"""A study's MLflow runs: the tags that make a run a trial, and the queries a resumed
study needs (which trials already have a FINISHED run; runs a killed study left RUNNING)."""

from regaudit.answer.outcomes import STUDY_PARAM
from regaudit.schema import TAG_PREFIX
from regaudit.tracking.experiments import PARENT, ROLE_TAG  # noqa: F401 - their home

STUDY_TAG = TAG_PREFIX + "study"
VARIANT_TAG = TAG_PREFIX + "variant"
SEED_TAG = TAG_PREFIX + "seed"
TRIAL_TAG = TAG_PREFIX + "study.trial"
NOTES_TAG = TAG_PREFIX + "study.notes"
NODE_TAG = TAG_PREFIX + "study.node"
#: ROLE_TAG is "parent" on the study's parent run (tagged `regaudit.study` too; its trials
#: are its children through MLflow's own `mlflow.parentRunId`)
PARENT_RUN_TAG = "mlflow.parentRunId"
#: the param prefix of a variant's factor levels (`study.dropout`, `study.bn`, ...)
LEVEL_PARAM = STUDY_PARAM


def _study_filter(study_id):
    return f"tags.`{STUDY_TAG}` = '{study_id}'"


def study_runs(client, experiment_id, study_id, status=None, parent=False):
    """Every trial run of the study (optionally only those with `status`), oldest first;
    `parent=True`: its parent run(s) instead."""
    query = _study_filter(study_id) + (f" and attributes.status = '{status}'" if status else "")
    out, token = [], None
    while True:
        page = client.search_runs([experiment_id], query, max_results=1000, page_token=token,
                                  order_by=["attributes.start_time ASC"])
        out += [run for run in page if (run.data.tags.get(ROLE_TAG) == PARENT) == parent]
        token = page.token
        if not token:
            return out


def finished_run(study_id, variant, seed, experiment_id):
    """The id of this trial's FINISHED run, if one exists."""
    import mlflow

    found = mlflow.search_runs(
        [experiment_id], output_format="list", max_results=1,
        filter_string=(f"{_study_filter(study_id)} and tags.`{VARIANT_TAG}` = '{variant}' "
                       f"and tags.`{SEED_TAG}` = '{seed}' and attributes.status = 'FINISHED'"))
    return found[0].info.run_id if found else None


def finished_trials(client, experiment_id, study_id):
    """{(variant, seed): run id} of the study's FINISHED runs (the first of each)."""
    out = {}
    for run in study_runs(client, experiment_id, study_id, "FINISHED"):
        key = (run.data.tags.get(VARIANT_TAG), int(run.data.tags.get(SEED_TAG, -1)))
        out.setdefault(key, run.info.run_id)
    return out


def end_stale(client, experiment_id, study_id):
    """Mark the study's RUNNING runs KILLED (a study interrupted before they ended; this
    study's own trials are not started yet); return how many."""
    stale = study_runs(client, experiment_id, study_id, "RUNNING")
    for run in stale:
        client.set_terminated(run.info.run_id, status="KILLED")
    return len(stale)
