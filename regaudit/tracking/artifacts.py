"""Reading a run back: its regaudit/ folder downloaded from its artifact store in one go,
its per-audit Parquet parts joined into one table each, its JSON artifacts parsed. The
writing side is `regaudit.tracking.writer`."""

import json
import os
import tempfile
import threading

from regaudit.errors import error_line
from regaudit.schema import ARTIFACT_DIR


def _corrupt(run_id, name, error):
    from regaudit.errors import RegauditError

    return RegauditError(
        f"regaudit: the artifact regaudit/{name} of run {run_id!r} is damaged "
        f"({type(error).__name__}: {error_line(error, 120)}); "
        "delete it in the MLflow UI or rerun the training to read this run.")


def _read_table(run_id, entry, folder, parts):
    """One table from its audit parts: read as Arrow tables and joined there (one
    conversion to pandas instead of one per part), part by part where their columns
    cannot be joined (a part of an older regaudit)."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not parts:
        return pd.DataFrame()
    tables = []
    for part in parts:
        try:
            tables.append(pq.read_table(os.path.join(folder, part)))
        except Exception as error:  # noqa: BLE001 - pyarrow raises several kinds
            raise _corrupt(run_id, f"{entry}/{part}", error) from None
    try:
        return pa.concat_tables(tables, promote_options="default").to_pandas().reset_index(drop=True)
    except (pa.ArrowException, ValueError, TypeError):
        frames = [_read_part(run_id, f"{entry}/{p}", os.path.join(folder, p)) for p in parts]
        return pd.concat(frames, ignore_index=True)


def _read_part(run_id, name, path):
    import pandas as pd

    try:
        return pd.read_parquet(path)
    except Exception as error:  # noqa: BLE001 - pyarrow raises several kinds
        raise _corrupt(run_id, name, error) from None


_PROGRESS_BAR = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"


_QUIET = {"count": 0}
_QUIET_LOCK = threading.Lock()


def _quietly(download):
    """`download()` (an MLflow artifact download) without MLflow's tqdm progress bar
    (shown whenever tqdm is installed), which would break the CLI's one-line errors and
    litter a training script's output from the train-end report; a user's own setting
    of MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR wins. Downloads run side by side (a report's
    runs): the setting is made by the first and removed by the last."""
    with _QUIET_LOCK:
        users = _QUIET["count"] == 0 and _PROGRESS_BAR in os.environ
        if not users:
            if _QUIET["count"] == 0:
                os.environ[_PROGRESS_BAR] = "false"
            _QUIET["count"] += 1
    if users:  # the user's own setting
        return download()
    try:
        return download()
    finally:
        with _QUIET_LOCK:
            _QUIET["count"] -= 1
            if _QUIET["count"] == 0:
                os.environ.pop(_PROGRESS_BAR, None)


def _download(client, run_id, folder, artifact_uri=None):
    """The run's `regaudit/` folder downloaded into `folder`: straight from its artifact
    store when the run's `artifact_uri` is known (a report on many runs has it from the
    search: no `get_run` per run), else through MLflow's `runs:/` resolution."""
    if artifact_uri is None:
        return _quietly(lambda: client.download_artifacts(run_id, ARTIFACT_DIR, folder))
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    repository = get_artifact_repository(artifact_uri)
    return _quietly(lambda: repository.download_artifacts(ARTIFACT_DIR, folder))


def download_tables(run_id, client=None, artifact_uri=None):
    """{table name: DataFrame} of every Parquet table of a run, plus `meta` and `model`
    (the JSON artifacts as dicts), from one download of the run's `regaudit/` folder
    (from `artifact_uri`, the run's artifact root, when the caller has it)."""
    from mlflow.tracking import MlflowClient

    client = client or MlflowClient()
    out = {}
    with tempfile.TemporaryDirectory(prefix="regaudit-") as folder:
        root = _download(client, run_id, folder, artifact_uri)
        for entry in sorted(os.listdir(root)):
            path = os.path.join(root, entry)
            if os.path.isdir(path):
                parts = sorted(p for p in os.listdir(path) if p.endswith(".parquet"))
                out[entry] = _read_table(run_id, entry, path, parts)
            elif entry.endswith(".json"):
                try:
                    with open(path, encoding="utf-8") as handle:
                        out[entry[: -len(".json")]] = json.load(handle)
                except ValueError as error:
                    raise _corrupt(run_id, entry, error) from None
    return out
