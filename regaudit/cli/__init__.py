"""The `regaudit` command line: a thin click face over the library.

Nothing heavy is imported at module level: `regaudit --help` starts without TensorFlow
and without MLflow. regaudit's own errors (`RegauditError`) become one line on stderr
and a non-zero exit, with the traceback only under `-v`.
"""

import os
import sys
import time

import click

from regaudit._version import __version__
from regaudit.errors import RegauditError, error_line

#: A tracking server that does not answer fails a command in seconds, not after
#: MLflow's default of several minutes of retries (the user's own settings win).
ENVIRONMENT_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
                 "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "0",
                 # the commands print the UI address themselves; MLflow's own "View run"
                 # line would land in stdout that --json users parse
                 "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
                 # MLflow's INFO lines (creating tables and experiments) and TensorFlow's
                 # C++ start-up lines are not the command's output
                 "MLFLOW_LOGGING_LEVEL": "WARNING", "TF_CPP_MIN_LOG_LEVEL": "2"}


class Group(click.Group):
    """Maps RegauditError to one line on stderr and its exit code (also under
    click's CliRunner, which bypasses `main`)."""

    def invoke(self, context):
        try:
            return super().invoke(context)
        except RegauditError as error:
            if (context.obj or {}).get("verbose"):
                raise
            click.echo(str(error), err=True)
            context.exit(error.exit_code)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="regaudit")
@click.option(
    "--tracking-uri",
    envvar="MLFLOW_TRACKING_URI",
    help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, else sqlite:///mlflow.db).",
)
@click.option("-v", "--verbose", is_flag=True, help="Show full tracebacks on errors.")
@click.pass_context
def cli(context, tracking_uri, verbose):
    """regaudit: how Dropout and BatchNormalization shape your Keras model, measured
    while it trains and logged to MLflow."""
    context.obj = {"verbose": verbose}
    # the environment, not mlflow.set_tracking_uri: MLflow stays unimported here, and a
    # study's trials (other processes) write where this command reads
    os.environ["MLFLOW_TRACKING_URI"] = tracking_uri or _uri()
    for key, value in ENVIRONMENT_DEFAULTS.items():
        os.environ.setdefault(key, value)


def _bar(length, label, **options):
    """A progress bar on stderr when it is a terminal (none in pipes and logs, so an
    error stays one line)."""
    return click.progressbar(length=length, label=label, file=sys.stderr,
                             hidden=not sys.stderr.isatty(), **options)


def _uri():
    return os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")


def redact(text):
    from regaudit.tracking.secrets import redact as hide

    return hide(text)


def _load(run_ids, experiment):
    """Load runs with a progress bar on stderr."""
    from regaudit.tracking.experiments import resolve_runs
    from regaudit.read import load_runs

    ids, found = resolve_runs(run_ids, experiment)
    with _bar(len(ids), "loading runs") as bar:
        return load_runs(ids, progress=lambda _: bar.update(1), runs=found)


@cli.command()
@click.argument("run_ids", nargs=-1)
@click.option("--experiment", help="Report every audited run of this experiment (name or id).")
@click.option("--group-by", default=None, metavar="TAG",
              help="Group runs by this tag or param (default: regaudit.setup).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True),
              help="Report file (default: ./regaudit-report-<run or N-runs>.html|.md).")
@click.option("--format", "fmt", type=click.Choice(["html", "md"]), default="html",
              show_default=True)
@click.option("--no-log", is_flag=True, help="Do not log the report back to MLflow.")
def report(run_ids, experiment, group_by, output, fmt, no_log):
    """Write a comparative report of audited runs: findings, overview, figures and layer
    tables; log it back to MLflow (into the run, or into a new comparison run)."""
    from regaudit.read import default_output
    from regaudit.reports.publish import log_report
    from regaudit.tracking.experiments import ui_address
    from regaudit.reports.report import build_report, figure_count

    runs = _load(run_ids, experiment)
    output = output or default_output(runs.run_ids, fmt)
    with _bar(figure_count(), "rendering figures") as bar:
        made = build_report(runs, output, fmt=fmt, group_by=group_by,
                            progress=lambda _: bar.update(1))
    click.echo(f"report: {made.path}")
    if not no_log:
        try:
            target = log_report(made, runs, fmt)
        except Exception as error:  # noqa: BLE001 - the file is written; say what failed
            raise RegauditError(
                f"regaudit: the report is written to {made.path} but logging it to MLflow "
                f"failed ({type(error).__name__}: {error_line(error)}); "
                "rerun with --no-log to skip logging.") from None
        experiment = runs.runs["experiment_id"].iloc[0]
        click.echo(f"logged to MLflow run {target} (artifacts: regaudit/report/)")
        click.echo(f"open it in the MLflow UI: {ui_address(_uri(), experiment, target)}")


@cli.command()
@click.option("--experiment", help="Only runs of this experiment (name or id).")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10000))
def runs(experiment, limit):
    """List audited runs: id, experiment, name, setup, start time, status."""
    from mlflow.tracking import MlflowClient

    from regaudit.tracking.experiments import audited_runs, find_experiment

    client = MlflowClient()
    experiment_ids = None
    if experiment is not None:
        experiment_ids = [find_experiment(experiment, client).experiment_id]
    found_runs = audited_runs(client, experiment_ids, max_results=limit)
    if not found_runs:
        click.echo(f"no audited runs in {redact(_uri())}; train with callbacks=[RegAudit()] first.")
        return
    names = {}
    for run in found_runs:
        if run.info.experiment_id not in names:
            try:
                names[run.info.experiment_id] = client.get_experiment(run.info.experiment_id).name
            except Exception:  # noqa: BLE001 - the id is still worth printing
                names[run.info.experiment_id] = run.info.experiment_id
    width = max(10, *(len(name) for name in names.values()))
    click.echo(f"{'run id':32}  {'experiment':{width}}  {'setup':18}  {'started':16}  {'status':9}  name")
    for run in found_runs:
        started = time.strftime("%Y-%m-%d %H:%M", time.localtime((run.info.start_time or 0) / 1000))
        setup = run.data.tags.get("regaudit.setup", "")
        click.echo(f"{run.info.run_id:32}  {names[run.info.experiment_id]:{width}}  {setup:18}  "
                   f"{started:16}  {run.info.status:9}  {run.info.run_name or ''}")


@cli.command()
@click.argument("run_ids", nargs=-1)
def sync(run_ids):
    """Send audit writes kept in the local spool (the tracking server was away) to
    MLflow: the given runs, else every spooled run. Exit 1 if some could not be sent."""
    from regaudit.tracking.spool import spool_root, spooled_run_ids
    from regaudit.tracking.writer import RunWriter

    ids = list(run_ids) or spooled_run_ids()
    if not ids:
        click.echo(f"nothing to sync: the spool {spool_root()} is empty.")
        return
    left_total = 0
    for run_id in ids:
        writer = RunWriter(run_id)
        pending, broken = writer.spool.entries()
        try:
            replayed, left = writer.replay()
        except Exception as error:  # noqa: BLE001 - one line per run
            replayed, left = 0, len(pending)
            writer.last_error = f"{type(error).__name__}: {error_line(error)}"
        left_total += left
        skipped = f", {broken} damaged line(s) skipped" if broken else ""
        created = f" into the new MLflow run {writer.run_id}" if writer.run_id != run_id else ""
        reason = f" ({redact(writer.last_error)})" if left and writer.last_error else ""
        aside = f", {writer.refused} refused for good and kept aside ({writer.last_refusal})" if writer.refused else ""
        click.echo(f"run {run_id}: {replayed} write(s) sent{created}, {left} left{reason}{aside}{skipped}")
        if not left:
            _report_if_due(writer.run_id)
    if left_total:
        raise RegauditError(
            f"regaudit: {left_total} spooled write(s) could not be sent to {redact(_uri())}; check "
            "that the tracking server is up and run `regaudit sync` again.")


def _report_if_due(run_id):
    """After a run's spool is sent: its train-end report, if the store was away then."""
    from mlflow.tracking import MlflowClient

    from regaudit.reports.publish import log_run_report, report_due

    try:
        if report_due(run_id, MlflowClient()):
            log_run_report(run_id)
            click.echo(f"run {run_id}: its train-end report, logged now (regaudit/report/)")
    except Exception as error:  # noqa: BLE001 - the data is sent; the report can wait
        click.echo(f"run {run_id}: the report could not be logged ({type(error).__name__}); "
                   f"`regaudit report {run_id}` writes it.", err=True)


@cli.command()
@click.argument("run_ids", nargs=-1)
@click.option("--experiment", help="Every audited run of this experiment (name or id).")
@click.option("--group-by", default=None, metavar="TAG",
              help="Group runs by this tag or param (default: regaudit.setup).")
@click.option("--json", "as_json", is_flag=True,
              help="Print the findings as JSON (schema in the README), for CI gates.")
@click.option("--verbose", is_flag=True, help="Every finding in full.")
def show(run_ids, experiment, group_by, as_json, verbose):
    """Print the findings of audited runs (compared by group when there are several) in
    one screen: a study's recommendation, the article's claims as a table, then one line
    per rule, notices (!) first, each with its rule id."""
    import json

    from regaudit.answer.run_findings import findings
    from regaudit.answer.grouped import groups_json
    from regaudit.read import DEFAULT_GROUP, load_runs

    runs = load_runs(run_ids, experiment)
    found = findings(runs, runs.group(group_by or DEFAULT_GROUP))
    if as_json:
        click.echo(json.dumps({
            "schema": "regaudit.findings/1",
            "runs": [{"run_id": r, "name": n, "experiment_id": e} for r, n, e in
                     zip(runs.runs["run"], runs.runs["name"], runs.runs["experiment_id"])],
            "group_by": group_by or DEFAULT_GROUP,
            "findings": [f.as_dict() for f in found], "groups": groups_json(found)},
            indent=2, allow_nan=False))
        return
    from regaudit.cli.study import finding_lines

    listed = list(zip(runs.runs["run"], runs.runs["name"]))
    for run, name in listed[:5]:
        click.echo(f"{name} ({run})")
    if len(listed) > 5:
        click.echo(f"... and {len(listed) - 5} more runs")
    for line in finding_lines(found, verbose):
        click.echo(line)


@cli.command()
@click.option("--epochs", default=6, show_default=True, type=click.IntRange(1, 1000))
@click.option("--seeds", default=3, show_default=True, type=click.IntRange(1, 20),
              help="Seeds per variant.")
@click.option("--max-concurrent", default=2, show_default=True, type=click.IntRange(1, 64))
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True),
              default="regaudit-demo-report.html", show_default=True)
@click.option("--study-id", default=None, help="Resume this demo study: only trials without a FINISHED run run.")
@click.option("--verbose", is_flag=True, help="Every finding in full.")
def demo(epochs, seeds, max_concurrent, output, study_id, verbose):
    """A study of the seed article's CNN on real data: Dropout off and on x
    BatchNormalization none, after and before the activation, and the model as given,
    trained with RegAudit on scikit-learn's bundled digits with several seeds each on Ray
    Tune, then the recommendation, the article's claims and the report. Exit 1 when a
    trial failed and no retry finished it; Ctrl-C says how to resume (exit 130)."""
    from regaudit import studies
    from regaudit.callbacks.demo import DEMO_EXPERIMENT, DESIGN
    from regaudit.cli.study import conclude, resumable
    from regaudit.tracking.experiments import ui_address

    started = time.perf_counter()
    result = resumable(lambda: studies.study(
        "regaudit.callbacks.demo:article_model", "regaudit.callbacks.demo:load_digits_28",
        design=DESIGN, seeds=seeds, epochs=epochs, batch_size=16, experiment=DEMO_EXPERIMENT,
        study_id=study_id, max_concurrent=max_concurrent, output=os.path.abspath(output)))
    click.echo(f"trained {result.trained} runs in {time.perf_counter() - started:.0f} s")
    browse = []
    if result.report_run:
        import mlflow

        experiment = mlflow.get_experiment_by_name(DEMO_EXPERIMENT).experiment_id
        browse = [f"browse it: mlflow ui --backend-store-uri {redact(_uri())}, then open "
                  f"{ui_address(_uri(), experiment, result.report_run)}"]
    conclude(result, verbose, more=browse)


from regaudit.cli.lint import lint  # noqa: E402 - the lint command, registered on the group

cli.add_command(lint)
from regaudit.cli.study import study  # noqa: E402 - the study command

cli.add_command(study)


def main(argv=None):
    """Entry point: one line on stderr and a non-zero exit for regaudit's own errors."""
    verbose = "-v" in (argv or sys.argv[1:]) or "--verbose" in (argv or sys.argv[1:])
    try:
        code = cli.main(args=argv, prog_name="regaudit", standalone_mode=False)
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("regaudit: interrupted", err=True)
        sys.exit(130)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except RegauditError as error:
        if verbose:
            raise
        click.echo(str(error), err=True)
        sys.exit(error.exit_code)
    sys.exit(code if isinstance(code, int) else 0)
