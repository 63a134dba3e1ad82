"""The callbacks' arguments: their documentation (appended to each callback's docstring)
and their constraints, declared once and checked when the callback is made, with
Keras-style messages (what is wrong, what was received)."""

import difflib
import numbers

from regaudit.errors import UsageError

ARGUMENTS_DOC = """
    Args:
        probe: `(x, y)` or `x` to audit on, used whole. Default: `probe_size` samples of
            the validation data of `fit`, else of its training data. None.
        probe_size: samples drawn (seeded) when the probe comes from `fit`'s data. 512.
        schedule: `"epoch"`, `Every(epochs=N)`, `Every(steps=N)` or a callable epoch ->
            bool. An audit also runs before the first training step. "epoch".
        seed: seeds the probe choice and the reservoir positions. 0.
        strict: re-raise a failing measure instead of warning and switching it off. False.
        probe_batch_size: probe samples per mini-batch of the pass. 128.
        gradient_ics: the gradient-based internal covariate shift of Santurkar et al.
            (one extra forward and backward pass per layer with weights): False, True
            (at every audit) or its own schedule (`Every(epochs=5)`). False.
        mc_samples: Monte-Carlo dropout samples T per audit (dropout ensembles); the cost
            grows linearly with T, raise it for a longer accuracy-against-k curve. 8.
        ensemble_probe_size: the first this many probe samples carry the dropout
            ensemble (its cost is T forward passes over them). 128.
        write_timeout: seconds an audit waits at most for MLflow (its writes and the
            replay of earlier ones); what cannot be written in time goes to a local spool
            (`REGAUDIT_SPOOL_DIR`, default ~/.cache/regaudit/spool) and is replayed at the
            next audit, at train end, or by `regaudit sync`. An outage is waited for once:
            after that the writes go straight to the spool until a background probe sees
            the store back (`regaudit.tracking.outage`). 10.
        layers: the layers to measure: a regular expression matched whole against layer
            names, a Keras layer class, or a list of both (`[keras.layers.Conv2D,
            "dense_.*"]`). The model always runs whole; each measured layer adds its
            reductions to the pass. None: every layer.
        max_metric_layers: per-layer MLflow metrics for at most this many measured layers
            (evenly spaced along the graph, first and last included, plus every Dropout
            layer); model-wide metrics always; every measure of every layer is in the
            Parquet tables. 32.
        report: at train end, write this run's report (`regaudit report RUN_ID`) and log
            it with its PNGs to the run (`regaudit/report/report.html`,
            `regaudit/plots/*.png`). It renders in a background thread after `fit`
            returns (`callback.report_thread.join()` waits for it). Default: on, unless
            the environment sets REGAUDIT_REPORT=0.
"""


def _positive_int(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _int_at_least_zero(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _positive_seconds(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and value > 0


def _flag(value):
    return isinstance(value, bool)


def _flag_or_none(value):
    return value is None or isinstance(value, bool)


def _seed(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and 0 <= value < 2**32


#: argument -> (its check, what it expects, in the error's words)
CONSTRAINTS = {
    "probe_size": (_positive_int, "a positive int"),
    "probe_batch_size": (_positive_int, "a positive int"),
    "mc_samples": (_positive_int, "a positive int"),
    "ensemble_probe_size": (_positive_int, "a positive int"),
    "max_metric_layers": (_int_at_least_zero, "an int >= 0"),
    "write_timeout": (_positive_seconds, "a positive number of seconds"),
    "seed": (_seed, "an int from 0 to 2**32 - 1"),
    "strict": (_flag, "True or False"),
    "report": (_flag_or_none, "True, False or None"),
}

#: names users reach for that regaudit spells otherwise (Keras' and other tools' words)
ALIASES = {
    "every": "schedule=Every(epochs=N)", "freq": "schedule=Every(epochs=N)",
    "frequency": "schedule=Every(epochs=N)", "audit_every": "schedule=Every(epochs=N)",
    "every_n_epochs": "schedule=Every(epochs=N)", "every_n_steps": "schedule=Every(steps=N)",
    "log_every_n_steps": "schedule=Every(steps=N)", "validation_data": "probe=(x, y)",
    "data": "probe=(x, y)", "x": "probe=(x, y)", "probe_data": "probe=(x, y)",
    "num_samples": "mc_samples=T", "samples": "mc_samples=T", "batch_size": "probe_batch_size=N",
    "random_state": "seed=N", "tracking_uri": "the environment's MLFLOW_TRACKING_URI",
    "run_id": "an active MLflow run (mlflow.start_run(run_id=...)) around fit",
}


def check_known(called, unknown, accepted):
    """Refuse keyword arguments `called` (the class the user made) does not take, in one
    line naming the class, the closest accepted argument and every accepted one."""
    if not unknown:
        return
    name = sorted(unknown)[0]
    close = difflib.get_close_matches(name, accepted, n=1, cutoff=0.6)
    hint = ALIASES.get(name) or (f"{close[0]}=" if close else None)
    raise UsageError(
        f"regaudit: {called}() got an unexpected keyword argument {name!r}"
        f"{f' (did you mean {hint}?)' if hint else ''}; it accepts {', '.join(accepted)}.")


def check_arguments(**arguments):
    """Raise `UsageError` for the first argument outside its constraint (`CONSTRAINTS`):
    "regaudit: <name> expects <what>; received <name>=<value>."."""
    for name, value in arguments.items():
        holds, expected = CONSTRAINTS[name]
        if not holds(value):
            raise UsageError(f"regaudit: {name} expects {expected}; received {name}={value!r}.")
