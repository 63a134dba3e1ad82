"""Which runs: the audited runs of an experiment or of the whole store, run ids resolved,
one-line errors for what MLflow could not give, and the MLflow UI address of a run. Loading them is `regaudit.read`."""

from urllib.parse import urlsplit, urlunsplit

from regaudit.errors import RegauditError, error_line
from regaudit.schema import TAG_PREFIX

#: The tag that marks a report run (not an audited training run).
REPORT_TAG = TAG_PREFIX + "report_of"
#: a study's runs: "parent" marks the study's own run, which holds the report and the
#: answer, not audit data (`regaudit.studies.parent`)
ROLE_TAG = TAG_PREFIX + "study.role"
PARENT = "parent"


#: Where `mlflow ui` / `mlflow server` listen by default.
DEFAULT_UI = "http://127.0.0.1:5000"


def ui_base(tracking_uri):
    """The MLflow UI's address for a tracking URI: the server itself for http(s) URIs
    (credentials, query and fragment removed, so no secret is ever printed), else where
    `mlflow ui --backend-store-uri <uri>` listens by default."""
    parts = urlsplit(str(tracking_uri or ""))
    if parts.scheme in ("http", "https"):
        host = parts.hostname or ""
        netloc = f"[{host}]" if ":" in host else host
        if parts.port:
            netloc += f":{parts.port}"
        return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
    return DEFAULT_UI


def ui_address(tracking_uri, experiment_id, run_id):
    """The MLflow UI page of a run's artifacts, where regaudit/report/report.html opens."""
    return f"{ui_base(tracking_uri)}/#/experiments/{experiment_id}/runs/{run_id}/artifacts"


def tracking_uri():
    """The tracking URI as it may be printed: credentials redacted."""
    import mlflow

    from regaudit.tracking.secrets import redact

    return redact(mlflow.get_tracking_uri())


def client_of(client=None):
    """`client`, or an MlflowClient of the current tracking URI."""
    from mlflow.tracking import MlflowClient

    return client or MlflowClient()


def mlflow_error(error, what):
    """A one-line RegauditError for an MLflow failure while reading `what`."""
    from mlflow.exceptions import MlflowException

    uri = tracking_uri()
    message = error_line(error, limit=1000) or type(error).__name__
    if isinstance(error, MlflowException) and (
            getattr(error, "error_code", "") == "RESOURCE_DOES_NOT_EXIST"
            or "does not exist" in message.lower()):
        return RegauditError(
            f"regaudit: {what} was not found in the tracking store {uri}; "
            "list the audited runs with `regaudit runs`."
        )
    return RegauditError(
        f"regaudit: could not read {what} from the tracking store {uri} ({message[:200]}); "
        "check --tracking-uri or MLFLOW_TRACKING_URI and that the server is up."
    )


def find_experiment(experiment, client=None):
    """The MLflow experiment named (or with the id) `experiment`; one-line error if none."""
    client = client_of(client)
    try:
        found = client.get_experiment_by_name(experiment)
        if found is None and str(experiment).isdigit():
            found = client.get_experiment(str(experiment))
    except Exception as error:
        raise mlflow_error(error, f"experiment {experiment!r}") from None
    if found is None:
        raise RegauditError(
            f"regaudit: no experiment named {experiment!r} in the tracking store {tracking_uri()}; "
            "list the audited runs with `regaudit runs`."
        )
    return found


def experiment_runs(experiment, client=None):
    """The audited training runs of an experiment (MLflow Run objects), oldest first; a
    one-line error when there are none."""
    client = client_of(client)
    runs = audited_runs(client, experiment_ids=[find_experiment(experiment, client).experiment_id])
    if not runs:
        raise RegauditError(
            f"regaudit: experiment {experiment!r} has no audited runs; train with "
            "model.fit(..., callbacks=[RegAudit()]) inside it first."
        )
    return sorted(runs, key=lambda r: r.info.start_time or 0)


def audited_runs(client=None, experiment_ids=None, max_results=1000):
    """MLflow Run objects carrying regaudit tags (report runs and study parent runs, which
    hold reports and no audit, left out), newest first."""
    client = client_of(client)
    try:
        if experiment_ids is None:
            experiment_ids = [e.experiment_id for e in client.search_experiments()]
        if not experiment_ids:
            return []
        runs = client.search_runs(
            experiment_ids, filter_string=f"tags.`{TAG_PREFIX}version` LIKE '%'",
            max_results=max_results, order_by=["attributes.start_time DESC"],
        )
    except RegauditError:
        raise
    except Exception as error:
        raise mlflow_error(error, "the list of runs") from None
    return [run for run in runs if REPORT_TAG not in run.data.tags
            and run.data.tags.get(ROLE_TAG) != PARENT]


def resolve_run_ids(run_ids=(), experiment=None, client=None):
    """The given run ids, then every audited run of `experiment` not among them; a
    one-line error when that leaves none."""
    return resolve_runs(run_ids, experiment, client)[0]


def resolve_runs(run_ids=(), experiment=None, client=None):
    """(`resolve_run_ids`, the MLflow Run objects the experiment's search returned)."""
    ids, found = list(dict.fromkeys(run_ids)), []
    if experiment is not None:
        found = experiment_runs(experiment, client)
        ids += [run.info.run_id for run in found if run.info.run_id not in ids]
    if not ids:
        raise RegauditError(
            "regaudit: no runs given; pass run ids or --experiment NAME "
            "(list the audited runs with `regaudit runs`)."
        )
    return ids, found
