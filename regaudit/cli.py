"""The `regaudit` command line: a thin click face over the library.

Nothing heavy is imported at module level: `regaudit --help` starts without TensorFlow
and without MLflow.
"""

import os
import sys
import time

import click

from regaudit._version import __version__
from regaudit.errors import RegauditError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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
    if tracking_uri:
        # the environment, not mlflow.set_tracking_uri: MLflow stays unimported here
        os.environ["MLFLOW_TRACKING_URI"] = tracking_uri


@cli.command()
@click.option("--epochs", default=10, show_default=True, type=click.IntRange(1, 1000))
@click.option("--seed", default=0, show_default=True, type=int)
def demo(epochs, seed):
    """Train the seed article's CNN (Conv2D+BN+pool+Dropout) with RegAudit on
    scikit-learn's bundled digits and log the audit to MLflow."""
    from regaudit.callbacks.demo import run_demo

    started = time.perf_counter()
    run_id = run_demo(epochs=epochs, seed=seed, echo=click.echo)
    uri = os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
    click.echo(f"done in {time.perf_counter() - started:.0f} s; run id {run_id}")
    click.echo(f"browse it: mlflow ui --backend-store-uri {uri}  (then open http://127.0.0.1:5000)")


def main(argv=None):
    """Entry point: one line on stderr and a non-zero exit for regaudit's own errors."""
    verbose = "-v" in (argv or sys.argv[1:]) or "--verbose" in (argv or sys.argv[1:])
    try:
        cli.main(args=argv, prog_name="regaudit", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("regaudit: aborted", err=True)
        sys.exit(130)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except RegauditError as error:
        if verbose:
            raise
        click.echo(str(error), err=True)
        sys.exit(error.exit_code)
    sys.exit(0)
