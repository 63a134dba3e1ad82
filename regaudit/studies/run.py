"""Running a study's trials on Ray Tune.

On one machine Ray starts locally (no server to set up); `address` joins an existing
cluster. Each trial is one Ray Tune trial (`_trainable`) that trains one variant with one
seed (`regaudit.callbacks.study.trial.train_trial`) as its own MLflow run. Trials that
already have a FINISHED run are not started (a resumed study), runs a killed study left
RUNNING are marked KILLED first, and Ray retries a crashed trial once (`FailureConfig`),
the crashed attempt's run ending FAILED. Progress goes to stderr: one updating line on a
terminal, one line per finished trial otherwise.
"""

import logging
import math
import os
import sys
import time

from regaudit.errors import RegauditError, UsageError, error_line

#: Ray retries a crashed trial this many times
MAX_FAILURES = 1


def _trainable(config):
    import ray
    from ray import tune

    from regaudit.callbacks.study.trial import train_trial

    result = train_trial(config["spec"], config["trial"], tune.get_context().get_trial_id() or "",
                         ray.get_runtime_context().get_node_id() or "")
    tune.report({k: v for k, v in result.items() if k != "skipped"} | {"skipped": int(result["skipped"])})


def _local_store(uri):
    return uri.startswith(("sqlite:", "file:")) or "://" not in uri


def check_cluster(address, tracking_uri):
    """Before anything starts: Ray installed, a store every node reaches, the cluster there."""
    try:
        import ray  # noqa: F401
    except ImportError:
        raise UsageError("Ray is not installed; a study runs its trials on Ray Tune: "
                         "pip install 'regaudit[study]'") from None
    if address and _local_store(tracking_uri):
        raise UsageError(f"MLflow store {tracking_uri} is a local file, which trials on other machines "
                         "of a Ray cluster cannot reach; set MLFLOW_TRACKING_URI to an MLflow server "
                         "(http://...) for a study with --address")
    if address:
        _reachable(address)


#: the logger of Ray's "Token authentication is enabled for this Ray cluster" notice
RAY_TOKEN_NOTICE = "ray._private.authentication.authentication_token_setup"


def start_ray(address, tracking_uri):
    """Start Ray locally (address None) or join the cluster at `address`."""
    check_cluster(address, tracking_uri)
    import ray

    env = {"RAY_CHDIR_TO_TRIAL_DIR": "0", "TF_CPP_MIN_LOG_LEVEL": "2",
           "MLFLOW_TRACKING_URI": tracking_uri, "PYTHONWARNINGS": "ignore::DeprecationWarning"}
    if address is None:
        # a Ray of regaudit's own, token authentication on (Ray's default for a new local
        # cluster): its notice saying so is not the command's output. A cluster the user
        # gave keeps every one of Ray's words.
        logging.getLogger(RAY_TOKEN_NOTICE).setLevel(logging.ERROR)
    try:
        # no address: a Ray of its own on this machine ("local"), never a cluster some
        # `ray start` left running here
        ray.init(address=address or "local", include_dashboard=False, log_to_driver=False,
                 ignore_reinit_error=True, logging_level="ERROR", configure_logging=False,
                 runtime_env={"env_vars": env})
    except (ConnectionError, RuntimeError, ValueError) as error:
        first = error_line(error) or type(error).__name__
        raise RegauditError(f"Ray cluster at {address or 'this machine'} cannot be reached ({first}); "
                            "expected a running cluster (`ray start --head`) or no --address") from None
    return ray


def _reachable(address, timeout=3.0):
    """Fail in one line, before Ray's own minute of retries, when nothing listens at a
    cluster address `host:port` (or `ray://host:port`; `auto` is left to Ray)."""
    import socket

    target = address.split("://", 1)[-1]
    host, _, port = target.rpartition(":")
    if address == "auto" or not host or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as error:
        raise UsageError(f"Ray cluster at {address} cannot be reached ({error.strerror or error}); "
                         "expected the address of a running cluster (`ray start --head` prints it), "
                         "or no --address to run Ray on this machine") from None


class _Progress:
    """Trials done / running / left and the estimated time left."""

    def __init__(self, total, concurrent, stream=None):
        self.total, self.concurrent = total, max(1, concurrent)
        self.stream = stream or sys.stderr
        self.done, self.failed, self.started = 0, 0, time.perf_counter()
        self.tty = self.stream.isatty()

    def line(self, running):
        elapsed = time.perf_counter() - self.started
        left = max(0, self.total - self.done - self.failed)
        running = min(max(0, running), left)
        eta = ""
        if self.done:
            per = elapsed / self.done
            eta = f", about {per * max(0, left - running / 2):.0f} s left"
        return (f"trials: {self.done} done, {running} running, {left - running} waiting"
                f"{f', {self.failed} failed' if self.failed else ''}{eta}")

    def finished(self, trial, running, error=None):
        if error is None:
            self.done += 1
        else:
            self.failed += 1
        config = trial.config["trial"]
        what = f"{config['variant']}, seed {config['seed']}"
        if self.tty:
            self.stream.write("\r\033[K" + self.line(running))
        elif error is not None or self._milestone(self.done + self.failed):
            result = "failed" if error is not None else "done"
            self.stream.write(f"[{self.done + self.failed}/{self.total}] {what}: {result}; {self.line(running)}\n")
        self.stream.flush()

    def _milestone(self, count):
        """In a log (not a terminal), a finished trial gets its line at each tenth of the
        study (every failure does), so a long study stays a screen."""
        return any(count == math.ceil(step * self.total / 10) for step in range(1, 11))

    def close(self):
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _callback(progress):
    from ray import tune

    class Progress(tune.Callback):
        def on_trial_complete(self, iteration, trials, trial, **info):
            progress.finished(trial, sum(t.status == "RUNNING" for t in trials) - 1)

        def on_trial_error(self, iteration, trials, trial, **info):
            progress.finished(trial, sum(t.status == "RUNNING" for t in trials) - 1, error=True)

    return Progress()


def run_trials(pending, spec, address=None, max_concurrent=2, cpus_per_trial=1, gpus_per_trial=0,
               storage=None, progress=True):
    """Run `pending` [{"variant", "levels", "seed"}] on Ray Tune; return (results
    [{run_id, ...}], errors [(trial, error line)])."""
    if not pending:
        return [], []
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # with verbose=0: no tables on the terminal
    # Ctrl-C reaches regaudit as KeyboardInterrupt (the study then says how to resume it),
    # not Ray's handler, which ends the run quietly and advises Tuner.restore
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    ray = start_ray(address, spec["tracking_uri"])
    from ray import tune

    meter = _Progress(len(pending), max_concurrent) if progress else None
    tuner = tune.Tuner(
        tune.with_resources(_trainable, {"cpu": cpus_per_trial, "gpu": gpus_per_trial}),
        param_space={"spec": spec, "trial": tune.grid_search(pending)},
        # a worker process trains one trial after another: TensorFlow, Keras and MLflow are
        # imported once per worker, not once per trial (each trial seeds itself and clears
        # Keras' session, `train_trial`)
        tune_config=tune.TuneConfig(max_concurrent_trials=max_concurrent, num_samples=1,
                                    reuse_actors=True),
        run_config=tune.RunConfig(
            name=f"regaudit-{spec['study_id']}-{int(time.time())}",
            storage_path=storage or os.path.join(os.path.expanduser("~"), "ray_results"),
            failure_config=tune.FailureConfig(max_failures=MAX_FAILURES), verbose=0,
            callbacks=[_callback(meter)] if meter else []))
    # a failed trial is said once, in regaudit's line (the traceback stays in its error.txt)
    quiet = [logging.getLogger(name) for name in ("ray.tune", "ray.train", "ray.air")]
    levels = [logger.level for logger in quiet]
    for logger in quiet:
        logger.setLevel(logging.CRITICAL)
    try:
        grid = tuner.fit()
    finally:
        for logger, level in zip(quiet, levels):
            logger.setLevel(level)
        if meter:
            meter.close()
        if address is None:
            ray.shutdown()
    results, errors = [], []
    for result in grid:
        trial = result.config["trial"] if result.config else {}
        if result.error is not None:
            errors.append((trial, trial_error(result)))
        elif result.metrics:
            results.append(result.metrics | {"trial": trial})
    return results, errors


def trial_error(result):
    """A failed trial's error in one line: the user's exception (not Ray's wrapper) and
    the first line of its message that says what went wrong, and where the full
    traceback is."""
    cause = getattr(result.error, "cause", None) or result.error
    where = os.path.join(result.path, "error.txt") if getattr(result, "path", None) else ""
    full = f" (full traceback: {where})" if where and os.path.isfile(where) else ""
    return f"{type(cause).__name__}: {error_line(cause, limit=160)}{full}"
