"""The read API: audited MLflow runs as tidy long-form pandas tables.

    runs = regaudit.load_runs(["3f2a...", "9c1b..."])      # or experiment="regaudit-demo"
    runs.activations    # run, epoch, step, probe, layer, layer_class, measure, value
    runs.shift, runs.ensemble, runs.history, runs.histograms
    runs.layers         # run, name, layer_class, parent, shape, activation, rate, params
    runs.tags           # run, key, value
    runs.lint           # run, id, rule, severity, layer, message, source
    runs.runs           # one row per run: name, group tags, final metrics, times

Each run costs one artifact download (its whole `regaudit/` folder) and one `get_run`,
never one metric-history request per key.
"""

import os
from dataclasses import dataclass, field

import pandas as pd

from regaudit._version import __version__
from regaudit.errors import RegauditError
from regaudit.tracking.experiments import REPORT_TAG, client_of, mlflow_error, resolve_runs
from regaudit.schema import (
    SCHEMA_VERSION, COLUMNS, HISTOGRAM_COLUMNS, TABLE_ACTIVATIONS, TABLE_ENSEMBLE, TABLE_HISTOGRAMS,
    TABLE_HISTORY, TABLE_SHIFT, TAG_PREFIX,
)

TABLES = (TABLE_ACTIVATIONS, TABLE_HISTOGRAMS, TABLE_SHIFT, TABLE_ENSEMBLE, TABLE_HISTORY)
LAYER_COLUMNS = ("run", "name", "layer_class", "parent", "shape", "activation", "rate",
                 "momentum", "regularizer", "params", "sources", "audited", "reason", "stochastic")
LINT_COLUMNS = ("run", "id", "rule", "severity", "layer", "message", "source")
#: Default grouping: the regularization setup that `RegAudit` tags every run with.
DEFAULT_GROUP = TAG_PREFIX + "setup"


def _empty(columns):
    return pd.DataFrame({name: pd.Series(dtype=object) for name in columns})


@dataclass
class RunSet:
    """Audited runs as tidy tables (see the module docstring); `group(by)` labels each
    run by a tag or param."""

    runs: pd.DataFrame
    activations: pd.DataFrame
    histograms: pd.DataFrame
    shift: pd.DataFrame
    ensemble: pd.DataFrame
    history: pd.DataFrame
    layers: pd.DataFrame
    tags: pd.DataFrame
    meta: dict = field(default_factory=dict)
    #: the architecture lint RegAudit ran at train begin: run, id, rule, severity, layer,
    #: message, source (`regaudit.model.lint_rules`)
    lint: pd.DataFrame = field(default_factory=lambda: _empty(LINT_COLUMNS))
    #: the notebook summary, made on the first display
    _summary: str = field(default=None, repr=False, compare=False)

    @property
    def run_ids(self):
        return list(self.runs["run"])

    def table(self, name):
        return getattr(self, name)

    def _repr_html_(self):
        """In Jupyter: a light summary of these runs' findings (grouped by
        `regaudit.setup`; a few KB, computed once) with where the full report is."""
        if self._summary is None:
            import mlflow

            from regaudit.answer.run_findings import findings
            from regaudit.tracking.experiments import ui_address
            from regaudit.reports.summary import summary_html

            found = findings(self, self.group())
            ids = self.run_ids
            title = f"regaudit: {len(ids)} run{'s' if len(ids) != 1 else ''}"
            if len(ids) == 1:
                href = ui_address(mlflow.get_tracking_uri(), self.runs["experiment_id"].iloc[0], ids[0])
                where, title = "regaudit/report/report.html in the run's MLflow artifacts", f"{title} {ids[0]}"
            else:
                href, where = None, ("The full report: `regaudit report " + " ".join(ids[:3])
                                     + (" ..." if len(ids) > 3 else "") + "` writes it and logs it to MLflow.")
            self._summary = summary_html(found, title, where, href)
        return self._summary

    def group(self, by=DEFAULT_GROUP):
        """{run id: group label} by a tag (`regaudit.setup`, or any tag or param name;
        `setup` is short for `regaudit.setup`). Runs without it are "(none)"."""
        by = by or DEFAULT_GROUP
        tags = self.tags
        candidates = [by, TAG_PREFIX + by]
        labels = {}
        for run in self.run_ids:
            own = tags[tags.run == run].set_index("key")["value"]
            params = self.runs.set_index("run").loc[run, "params"]
            value = next((own[c] for c in candidates if c in own.index), None)
            if value is None:
                value = next((params[c] for c in candidates if c in params), None)
            labels[run] = "(none)" if value is None else _short(str(value))
        return labels


#: Group labels and run names longer than this are cut where they are read, so a tag
#: crafted to flood a report or a terminal cannot.
MAX_LABEL = 120


def _short(text):
    return text if len(text) <= MAX_LABEL else f"{text[:MAX_LABEL]}... ({len(text):,} characters)"


def _run_frame(tables, name, columns, run_id):
    frame = tables.get(name)
    if frame is None or not len(frame):
        return _empty(columns)
    frame = frame.copy()
    frame["run"] = run_id
    return frame


def _final_history(history):
    if not len(history):
        return {}
    last = history.sort_values("epoch").groupby("measure")["value"].last()
    return {k: float(v) for k, v in last.items()}


def _downloaded(run_id, client, run, tags):
    """The run's regaudit/ artifacts ({table or JSON name: content}), checked: readable by
    this version, and holding regaudit data."""
    from regaudit.tracking.artifacts import download_tables

    try:
        tables = download_tables(run_id, client, run.info.artifact_uri)
    except RegauditError:
        raise
    except Exception as error:
        if TAG_PREFIX + "version" not in tags:
            tables = {}
        else:
            raise mlflow_error(error, f"the regaudit artifacts of run {run_id!r}") from None
    version = tables.get("meta", {}).get("schema_version", SCHEMA_VERSION)
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise RegauditError(
            f"regaudit: run {run_id!r} was written with regaudit data schema {version!r}, newer "
            f"than this regaudit ({__version__}, schema {SCHEMA_VERSION}); upgrade regaudit "
            "(pip install -U regaudit) to read it.")
    if not any(name in tables for name in TABLES):
        raise RegauditError(
            f"regaudit: run {run_id!r} has no regaudit data (no regaudit/ tables among its "
            "artifacts); train with model.fit(..., callbacks=[RegAudit()]) and pass that run."
        )
    return tables


def _load_one(run_id, client, run=None):
    try:
        run = run or client.get_run(run_id)
    except Exception as error:  # MlflowException, connection errors
        raise mlflow_error(error, f"run {run_id!r}") from None
    tags = dict(run.data.tags)
    if REPORT_TAG in tags:
        raise RegauditError(
            f"regaudit: run {run_id!r} is a regaudit report, not an audited training run; "
            f"pass the runs it compares ({tags[REPORT_TAG]})."
        )
    tables = _downloaded(run_id, client, run, tags)
    lint = pd.DataFrame(tables.get("lint", {}).get("findings", []))
    lint = lint.reindex(columns=[c for c in LINT_COLUMNS if c != "run"])
    lint.insert(0, "run", run_id)
    layers = pd.DataFrame(tables.get("model", {}).get("layers", []))
    layers = layers.reindex(columns=[c for c in LAYER_COLUMNS if c != "run"])
    layers.insert(0, "run", run_id)
    history = _run_frame(tables, TABLE_HISTORY, COLUMNS, run_id)
    info = run.info
    row = {
        "run": run_id,
        "name": _short(info.run_name or run_id[:8]),
        "experiment_id": info.experiment_id,
        "status": info.status,
        "start_time": info.start_time,
        "end_time": info.end_time,
        "seconds": (info.end_time - info.start_time) / 1000.0 if info.end_time else float("nan"),
        "model": tables.get("model", {}).get("model"),
        "params_count": int(layers["params"].fillna(0).sum()) if len(layers) else 0,
        "params": dict(run.data.params),
        "metrics": dict(run.data.metrics),
        "final": _final_history(history),
    }
    return {
        "row": row,
        "tables": {name: _run_frame(tables, name, HISTOGRAM_COLUMNS if name == TABLE_HISTOGRAMS else COLUMNS, run_id)
                   for name in TABLES},
        "layers": layers,
        "lint": lint,
        "tags": pd.DataFrame({"run": run_id, "key": list(tags), "value": list(tags.values())}),
        "meta": tables.get("meta", {}),
    }


def _concat(frames, columns):
    frames = [f for f in frames if len(f)]
    if not frames:
        return _empty(columns)
    return pd.concat(frames, ignore_index=True)


#: runs downloaded at once from a tracking server: each download waits on the network,
#: so a report on 100 runs reads them side by side. A local store (SQLite, files) is read
#: one run at a time: there the work is Python's, and threads only contend for it.
LOAD_THREADS = 8


def load_runs(run_ids=(), experiment=None, client=None, progress=None, runs=None):
    """A `RunSet` of the given runs and/or every audited run of `experiment`, each read
    once (its MLflow record, then one download of its `regaudit/` folder), LOAD_THREADS
    at a time, in the order given. `progress(run_id)` is called after each run loads (for
    a progress bar); `runs`, MLflow Run objects already fetched (a search's), spare a
    `get_run` each."""
    from concurrent.futures import ThreadPoolExecutor, as_completed

    client = client_of(client)
    ids, found = resolve_runs(run_ids, experiment, client)
    known = {run.info.run_id: run for run in list(runs or ()) + found}
    from regaudit.tracking.reach import is_http

    threads = min(LOAD_THREADS if is_http(client.tracking_uri) else 1, len(ids))
    with ThreadPoolExecutor(threads, thread_name_prefix="regaudit-load") as pool:
        futures = {pool.submit(_load_one, run_id, client, known.get(run_id)): run_id for run_id in ids}
        done = {}
        try:
            for future in as_completed(futures):
                done[futures[future]] = future.result()
                if progress is not None:
                    progress(futures[future])
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    loaded = [done[run_id] for run_id in ids]
    tables = {
        name: _concat([item["tables"][name] for item in loaded],
                      HISTOGRAM_COLUMNS if name == TABLE_HISTOGRAMS else COLUMNS)
        for name in TABLES
    }
    return RunSet(
        runs=pd.DataFrame([item["row"] for item in loaded]),
        layers=_concat([item["layers"] for item in loaded], LAYER_COLUMNS),
        lint=_concat([item["lint"] for item in loaded], LINT_COLUMNS),
        tags=_concat([item["tags"] for item in loaded], ("run", "key", "value")),
        meta={item["row"]["run"]: item["meta"] for item in loaded},
        **tables,
    )


def load_run(run_id, client=None):
    """A `RunSet` of one run."""
    return load_runs([run_id], client=client)


def default_output(run_ids, fmt):
    stem = "regaudit-report-" + (run_ids[0][:8] if len(run_ids) == 1 else f"{len(run_ids)}-runs")
    return os.path.abspath(stem + (".html" if fmt == "html" else ".md"))
