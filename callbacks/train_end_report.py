"""The train-end report: rendered and logged to the run in a background thread."""

import os
import tempfile
import warnings

from regaudit.errors import RegauditWarning
from regaudit.storage import RunWriter


def start_report(run_id):
    """Render the run's report and log it (HTML into regaudit/report/, each figure as
    regaudit/plots/<name>.png) in a background thread; a failure is one warning."""
    import threading

    def work():
        try:
            from mlflow.tracking import MlflowClient

            from regaudit.read import load_run
            from regaudit.reports.report import build_report, log_report

            client = MlflowClient()
            with tempfile.TemporaryDirectory(prefix="regaudit-") as folder:
                runs = load_run(run_id, client)
                made = build_report(runs, os.path.join(folder, "report.html"))
                log_report(made, runs, client=client)
                writer = RunWriter(run_id, client)
                for stem, png in made.images:
                    writer.log_png(png, f"{stem}.png")
        except Exception as error:  # noqa: BLE001 - training is over; say it, do not raise
            warnings.warn(
                f"regaudit: the train-end report of run {run_id} failed "
                f"({type(error).__name__}: {error}); write it with `regaudit report {run_id}`.",
                RegauditWarning, stacklevel=1)

    thread = threading.Thread(target=work, name=f"regaudit-report-{run_id[:8]}", daemon=False)
    thread.start()
    return thread
