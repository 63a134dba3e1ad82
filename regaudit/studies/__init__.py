"""`regaudit.studies`: the question answered by experiment on the user's own model,
run by `regaudit.study(...)` and `regaudit study`.

    result = regaudit.study("model.keras", "mydata:load", design="article", seeds=3, epochs=5)
    result.findings     # RA260 (the recommendation) first, then the claims and comparisons
    result              # in Jupyter: the study's report, inline

A study trains controlled variants of the model (`regaudit.studies.design`, rewritten by
`regaudit.studies.rewrite` or built by the user's builder) with several seeds each, every
trial an audited MLflow run in the study's experiment, on Ray Tune
(`regaudit.studies.run`); then reports them grouped by variant, the recommendation against
the model as given (`regaudit.studies.recommend`) at the top, logged to MLflow.
"""

import os
import uuid
from dataclasses import dataclass, field

from regaudit.errors import Interrupted, UsageError
from regaudit.answer.analysis import DEFAULT_MARGIN
from regaudit.answer.statistics import ALPHA
from regaudit.studies.sequential import DEFAULT_SPENDING, SPENDING
from regaudit.studies import design as designs
from regaudit.studies.runs import VARIANT_TAG, end_stale, finished_trials, study_runs

DEFAULT_EXPERIMENT = "regaudit-study"
#: the parent run's tag with the number of trainings the study's answer rests on
TRAININGS_TAG = "regaudit.study.trainings"


@dataclass
class StudyResult:
    """A finished study: its id, experiment, run ids (one FINISHED run per trial), the
    findings (`Finding`s, RA260 first, tested at `level`), the report's path and the
    MLflow run holding it, and the trials that failed [(trial, error line)]."""

    study_id: str
    experiment: str
    run_ids: list
    findings: list = field(default_factory=list)
    report: str = None
    report_run: str = None
    failed: list = field(default_factory=list)
    trained: int = 0
    #: the significance level of the look the study stopped at, and every look (seeds, level)
    level: float = ALPHA
    looks: list = field(default_factory=list)
    #: the study's runs that ended FAILED in MLflow (a trial may fail before its run exists)
    failed_runs: int = 0
    #: the seeds {variant: seeds} of the current look
    counts: dict = field(default_factory=dict)
    #: the study's parent MLflow run (its trials are its children; it holds the report)
    parent_run: str = None

    def failure_line(self):
        """One line on the trials that failed and no retry finished, or "" when none did."""
        if not self.failed:
            return ""
        attempted = self.trained + len(self.failed)
        where = (f"their runs are FAILED in MLflow experiment '{self.experiment}'" if self.failed_runs
                 else "no MLflow run was made for them")
        return (f"{len(self.failed)} of {attempted} trials failed; first error: {self.failed[0][1]}; "
                f"{where}")

    def _repr_html_(self):
        """In Jupyter: the study's answer and findings, a few KB, with a link to its
        report (the file, which is also in the parent run's MLflow artifacts)."""
        import pathlib

        from regaudit.reports.summary import summary_html

        title = f"regaudit study {self.study_id}: {len(self.run_ids)} runs in experiment '{self.experiment}'"
        if self.report and os.path.isfile(self.report):
            return summary_html(self.findings, title, self.report, pathlib.Path(self.report).as_uri())
        return summary_html(self.findings, title, "no report was written")


def _spec_part(value, what):
    """A model or data given as a path or `module:function` stays a string; a Python
    function or a keras.Model object is carried as is (Ray pickles functions by value)."""
    if isinstance(value, (str, os.PathLike)):
        text = os.fspath(value)
        if what == "model" and text.endswith((".keras", ".h5")):
            if not os.path.isfile(text):
                raise UsageError(f"model file {text} does not exist; expected a saved .keras file "
                                 "or a builder module:function")
            return os.path.abspath(text)
        if ":" not in text:
            raise UsageError(f"{what} {text!r}; expected "
                             f"{'a saved .keras file or ' if what == 'model' else ''}module:function")
        return text
    if callable(value) and not hasattr(value, "get_config"):
        return value
    if what == "model" and hasattr(value, "save"):
        return value
    raise UsageError(f"{what} {type(value).__name__}; expected a path, module:function or a function")


def tracking_uri():
    """The tracking URI every trial writes to, with a relative SQLite path made absolute."""
    import mlflow

    uri = mlflow.get_tracking_uri()
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        uri = "sqlite:///" + os.path.abspath(uri[len("sqlite:///"):])
    return uri


def plan(model, data, design="article", seeds=3, first_seed=0):
    """The trial table [(variant, levels, seed)] of a study (what `--dry-run` prints)."""
    _spec_part(model, "model")
    _spec_part(data, "data")
    if seeds < 1:
        raise UsageError(f"seeds {seeds}; expected 1 or more (3 or more for tests)")
    return designs.trials(design, seeds, first_seed)


def _saved(model_part):
    """A Keras model object saved under .regaudit-study/ (the trials load it by path);
    anything else as it is."""
    if isinstance(model_part, str) or not hasattr(model_part, "save"):
        return model_part
    from regaudit.errors import error_line
    from regaudit.studies.config_graph import BUILDER_SIGNATURE, NeedsBuilder

    folder = os.path.abspath(os.path.join(".regaudit-study"))
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{model_part.name}-{uuid.uuid4().hex[:8]}.keras")
    try:
        model_part.save(path)
    except Exception as error:  # noqa: BLE001 - Keras' own, said as what to give instead
        raise NeedsBuilder(
            f"model '{model_part.name}' cannot be saved for the trials ({type(error).__name__}: "
            f"{error_line(error, 120)}); give a builder `module:function` ({BUILDER_SIGNATURE})") from None
    return path


def check(model_part, data_part, design):
    """{variant: [notes]}: the data function called and every variant built once in this
    process, before any trial starts, so a model that needs a builder, a builder or data
    that fails, is said in one line here, not in every trial."""
    from regaudit.callbacks.study.trial import check_variants, load_data

    load_data(data_part)
    return check_variants(model_part, designs.variants(design))


def _look(result, counts, max_seeds, echo, spending):
    """One look at the runs so far at its level: the seeds {variant: seeds} to go on to
    (only the variants an open, reachable question needs), or None when none is."""
    from regaudit.answer.analysis import OUTCOME, analyse
    from regaudit.answer.statistics import at_level
    from regaudit.read import load_runs
    from regaudit.studies import sequential

    runs = load_runs(result.run_ids)
    with at_level(result.level):
        analysis = analyse(runs, runs.group(VARIANT_TAG))
        decision = sequential.next_look(analysis.estimates, analysis.family, analysis.questions,
                                        analysis.outcome(OUTCOME)[2], counts, max_seeds, result.level, spending)
    if decision.seeds is not None and echo is not None:
        echo(f"look {len(result.looks)} at {max(counts.values())} seeds (level {result.level:.3g}): {decision.decided} of "
             f"{len(analysis.estimates)} questions decided, {decision.open} open and reachable; more seeds "
             f"for {len(decision.seeds)} of {len(counts)} variants")
    return decision.seeds


def study(model, data, design="article", seeds=3, epochs=5, batch_size=32, experiment=None,
          study_id=None, address=None, max_concurrent=2, cpus_per_trial=1, gpus_per_trial=0,
          output=None, progress=True, first_seed=0, max_seeds=None, echo=None, margin=DEFAULT_MARGIN,
          spending=DEFAULT_SPENDING):
    """Run (or resume, with the same `study_id`) a study; return a `StudyResult`.

    Seeds: `seeds` per variant first; while a question is open and `max_seeds` could
    decide it, the variants it compares get more seeds and the study looks again, each
    look at its share of the 5% level under `spending` (`regaudit.studies.sequential`).
    `max_seeds` None: one look, the fixed design. `margin`: the accuracy difference below
    which an effect is negligible (`regaudit.answer.analysis`)."""
    import mlflow

    from regaudit.answer.analysis import with_margin
    from regaudit.studies.parent import close_parent, open_parent
    from regaudit.studies.run import check_cluster

    max_seeds = max(seeds, max_seeds or seeds)
    plan(model, data, design, seeds, first_seed)
    _check_policy(margin, spending)
    model_part, data_part = _spec_part(model, "model"), _spec_part(data, "data")
    model_part = _saved(model_part)
    check(model_part, data_part, design)
    study_id = study_id or uuid.uuid4().hex[:12]
    name = experiment or DEFAULT_EXPERIMENT
    uri = tracking_uri()
    check_cluster(address, uri)
    mlflow.set_tracking_uri(uri)
    experiment_id = mlflow.set_experiment(name).experiment_id
    client = mlflow.MlflowClient(uri)
    end_stale(client, experiment_id, study_id)
    parent = open_parent(client, experiment_id, study_id, design, {
        "design": design if isinstance(design, str) else "custom", "seeds": seeds, "max_seeds": max_seeds,
        "spending": spending, "margin": margin, "epochs": epochs, "batch_size": batch_size,
        "first_seed": first_seed, **_named(model=model_part, data=data_part)})
    spec = {"model": model_part, "data": data_part, "tracking_uri": uri, "study_id": study_id,
            "experiment": name, "epochs": int(epochs), "batch_size": int(batch_size),
            "sys_path": [os.getcwd()], "parent_run": parent}
    result = StudyResult(study_id, name, [], parent_run=parent)
    try:
        with with_margin(margin):
            _run_looks(result, design, seeds, max_seeds, first_seed, spec, client, experiment_id,
                       (address, max_concurrent, cpus_per_trial, gpus_per_trial), progress, echo, spending)
    except KeyboardInterrupt:
        close_parent(client, parent, status="KILLED")
        raise _interrupted(result, client, experiment_id, designs.trials_for(
            design, result.counts or seeds, first_seed)) from None
    except BaseException:
        close_parent(client, parent, status="FAILED")
        raise
    result.failed_runs = len(study_runs(client, experiment_id, study_id, "FAILED"))
    if result.run_ids:
        with with_margin(margin):
            report(result, output)
    close_parent(client, parent, result.findings, "FINISHED" if result.run_ids else "FAILED",
                 {TRAININGS_TAG: len(result.run_ids)})
    return result


def _interrupted(result, client, experiment_id, planned):
    """The `Interrupted` error of a study stopped during its trials: what finished."""
    study_id = result.study_id
    done = finished_trials(client, experiment_id, study_id)
    finished = sum((v, s) in done for v, _, s in planned)
    return Interrupted(
        f"study {study_id} interrupted: {finished} of {len(planned)} trials finished, so no "
        f"conclusion is drawn from a partial design; resume it with study_id={study_id!r} "
        "(its finished trials are not trained again)", study_id=study_id, finished=finished,
        planned=len(planned))


def _check_policy(margin, spending):
    if not 0 <= margin < 1 or spending not in SPENDING:
        raise UsageError(f"margin {margin!r}, spending {spending!r}; expected a margin in [0, 1) and a "
                         f"spending among {', '.join(SPENDING)}")


def _named(**parts):
    """{name: the part as a param}: a path or module:function as given, else what it is."""
    return {name: part if isinstance(part, str) else f"a {type(part).__name__}" for name, part in parts.items()}


def _run_looks(result, design, seeds, max_seeds, first_seed, spec, client, experiment_id, ray_options,
               progress, echo, spending):
    """Train the study's pending trials look by look, adding seeds to the variants an open,
    reachable question needs; `result` holds the runs, failures and looks so far."""
    from regaudit.studies import sequential
    from regaudit.studies.run import run_trials

    study_id = result.study_id
    counts = {v: seeds for v, _ in designs.variants(design)}
    previous = 0
    while True:
        trials = designs.trials_for(design, counts, first_seed)
        result.counts = dict(counts)
        done = finished_trials(client, experiment_id, study_id)
        pending = [{"variant": v, "levels": levels, "seed": s} for v, levels, s in trials
                   if (v, s) not in done]
        _, failed = run_trials(pending, spec, *ray_options, progress=progress)
        result.failed += failed
        result.trained += len(pending) - len(failed)
        done = finished_trials(client, experiment_id, study_id)
        result.run_ids = [done[(v, s)] for v, _, s in trials if (v, s) in done]
        most = max(counts.values())
        result.level = sequential.look_level(most, previous, max_seeds, spending=spending)
        result.looks.append((most, result.level))
        if not result.run_ids or most >= max_seeds:
            return
        more = _look(result, counts, max_seeds, echo, spending)
        if more is None:
            return
        previous = most
        counts.update(more)


def report(result, output=None):
    """The study's findings and report (grouped by variant), logged to MLflow."""
    from regaudit.read import load_runs
    from regaudit.reports.publish import log_report
    from regaudit.reports.report import build_report

    from regaudit.answer.statistics import at_level

    runs = load_runs(result.run_ids)
    path = os.path.abspath(output or f"regaudit-study-{result.study_id}.html")
    with at_level(result.level):
        made = build_report(runs, path, group_by=VARIANT_TAG)
    result.findings, result.report = made.findings, made.path
    result.report_run = log_report(made, runs, target=result.parent_run)
    return result
