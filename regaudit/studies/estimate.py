"""What `regaudit study --dry-run` says a study will cost: one trial of the model as given
timed in this process, and how trials run side by side share this machine's cores.

A trial's fit uses several cores by itself (TensorFlow, JAX and PyTorch run their ops on
threads), so two trials at a time on two cores do not finish in half the time: the
dry run measures how many cores one fit keeps busy (process CPU time over wall time) and
counts `min(max_concurrent, cores / cores_used)` trials' worth of progress at once.
"""

import os
import time
from dataclasses import dataclass

#: a study's fixed costs besides its trials, in seconds, measured on this project's 2-core
#: machines (2026-12-07, the demo's design): Ray's local start and stop (6.4 s) with its
#: tuner; the report over the finished runs, 18.4 s for 7 runs and 21.2 s for 21 (once,
#: and per run loaded)
RAY_START = 8.0
REPORT_ONCE = 17.0
REPORT_PER_RUN = 0.2
#: epochs of the model as given the dry run trains (the first holds the audit's setup)
EPOCHS_TIMED = 3


@dataclass
class Estimate:
    """A study's estimated wall time and what it is made of (seconds), and how many
    trials' worth of progress run at once (`parallel`)."""

    seconds: float
    parts: dict
    parallel: float
    cores_used: float


def time_one_trial(model_part, data, batch_size=32):
    """{part: seconds} of one trial of the model as given, timed here: the start of a
    fresh Python process importing Keras (what each Ray worker pays once), the data and
    the model built as a trial builds them, `EPOCHS_TIMED` audited epochs into a throwaway
    MLflow store (the first holds the audit's setup; the fastest later one stands for each
    further epoch); and "cores used", the cores that epoch kept busy."""
    import subprocess
    import sys
    import tempfile

    import keras
    import mlflow

    from regaudit.callbacks import RegAudit
    from regaudit.callbacks.study.trial import build, load_data

    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import keras, mlflow"], capture_output=True,
                   env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), check=False)
    start = time.perf_counter() - started
    began = time.perf_counter()
    train, validation = load_data(data)
    built, _ = build(model_part, {})
    prepare = time.perf_counter() - began
    ends = []

    class Clock(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            ends.append((time.perf_counter(), time.process_time()))

    saved = mlflow.get_tracking_uri()
    with tempfile.TemporaryDirectory() as folder:
        mlflow.set_tracking_uri(f"sqlite:///{folder}/dry-run.db")
        try:
            mlflow.set_experiment(experiment_id=mlflow.create_experiment(
                "regaudit-dry-run", artifact_location=f"file://{folder}/artifacts"))
            fit = dict(epochs=EPOCHS_TIMED, verbose=0, callbacks=[RegAudit(report=False), Clock()])
            began = time.perf_counter()
            if isinstance(train, (tuple, list)):
                built.fit(*train, validation_data=tuple(validation), batch_size=batch_size, **fit)
            else:
                built.fit(train, validation_data=validation, **fit)
            finished = time.perf_counter()
        finally:
            mlflow.set_tracking_uri(saved)
    # the later epochs alone (the first holds compilation, mostly on one thread), the
    # fastest of them: this machine's noise only ever adds time
    later = [(wall - ends[i][0], cpu - ends[i][1]) for i, (wall, cpu) in enumerate(ends[1:])]
    wall, cpu = min(later)
    return {"process start": start, "data and model": prepare,
            "first epoch (with the audit's setup)": ends[0][0] - began,
            "each further epoch": wall, "train end": finished - ends[-1][0],
            "cores used": cpu / max(wall, 1e-9)}


def estimate(timed, trials, epochs, max_concurrent, cores=None):
    """The `Estimate` of a study of `trials` trials from one trial's `timed` parts
    (`time_one_trial`, and "checks": the seconds the study's checks took here, every
    variant built once), `max_concurrent` at a time on `cores` (default: this machine's)."""
    cores = cores or os.cpu_count() or 1
    used = min(max(timed["cores used"], 1.0), cores)
    parallel = max(1.0, min(float(max_concurrent), cores / used))
    trial = (timed["data and model"] + timed["first epoch (with the audit's setup)"]
             + timed["each further epoch"] * (epochs - 1) + timed["train end"])
    # each worker starts once (side by side), then trains one trial after another
    trained = timed["process start"] + trials * trial / parallel
    report = REPORT_ONCE + REPORT_PER_RUN * trials
    parts = {"checks": timed.get("checks", 0.0), "Ray's start": RAY_START, "trials": trained,
             "report": report}
    return Estimate(sum(parts.values()), parts, parallel, used)
