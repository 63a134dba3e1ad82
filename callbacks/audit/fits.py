"""Which regaudit callback audits which fit, and what becomes of a fit that never ends.

Keras calls `on_train_end` only when `fit` returns. A fit interrupted between audits
(Ctrl-C during a training step, an error in the user's own code, a notebook cell
stopped) never calls it, and a run regaudit started would stay open until MLflow's own
exit hook ends it as FINISHED, which it was not. This module keeps one home for fits in
progress and ends such runs as MLflow ends an interrupted run:

- when the interpreter exits (a hook registered after MLflow's, so it runs first);
- when a later fit starts in the same thread (the notebook case: the cell was stopped,
  then run again): the old run is ended and the new fit gets a run of its own.

The status is KILLED after a KeyboardInterrupt, FAILED otherwise: after another error,
and when regaudit cannot see why the fit stopped (an exception the user's code caught), as
MLflow's own `with mlflow.start_run()` ends a run an exception left.
"""

import atexit
import sys
import threading
import warnings

from regaudit.errors import RegauditWarning

#: (id(model), id(the fit's params dict)) -> (the regaudit callback auditing that fit,
#: the thread it runs in): a second callback in the same fit stays off
_AUDITING = {}
_HOOKED = []


def fit_key(callback):
    # Keras hands one params dict to all of a fit's callbacks
    return id(callback.model), id(callback.params)


def claim(callback):
    """Register `callback` as the auditor of its fit; return the callback that already
    audits it (then this one stays off), else None. Runs of earlier fits in this thread
    that never ended are ended first."""
    key = fit_key(callback)
    other = _AUDITING.get(key, (None, None))[0]
    if other is not None and other is not callback:
        return other
    _end_stale(key, callback)
    _AUDITING[key] = (callback, threading.get_ident())
    return None


def release(callback):
    """The fit of `callback` ended (normally or by an interrupt it handled)."""
    for key, (registered, _) in list(_AUDITING.items()):
        if registered is callback:
            del _AUDITING[key]


def hook_exit():
    """Register the exit hook once, after MLflow's own (atexit runs the last one first)."""
    if not _HOOKED:
        import mlflow.tracking.fluent  # noqa: F401 - registers MLflow's hook before ours

        atexit.register(_at_exit)
        _HOOKED.append(True)


def interrupted_status():
    """KILLED when the last uncaught error was a KeyboardInterrupt (Python and IPython keep
    it in sys.last_type), else FAILED."""
    last = getattr(sys, "last_type", None)
    return "KILLED" if last is not None and issubclass(last, KeyboardInterrupt) else "FAILED"


def _end_stale(current, claiming):
    """Fits in this thread are not nested: an entry of another fit, or one of the claiming
    callback itself (its earlier fit), is a fit that never ended."""
    this_thread = threading.get_ident()
    for key, (callback, thread) in list(_AUDITING.items()):
        if thread != this_thread or (key == current and callback is not claiming):
            continue
        del _AUDITING[key]
        run_id = getattr(callback, "run_id", None)
        status = interrupted_status()
        if callback.end_unended(status):
            warnings.warn(
                f"regaudit: an earlier fit of model '{getattr(callback.model, 'name', '?')}' never "
                f"reached its end (stopped by an error or an interrupt), so its run {run_id} is "
                f"ended as {status} and this fit gets a run of its own.", RegauditWarning, stacklevel=4)


def _at_exit():
    status = interrupted_status()
    for key, (callback, _) in list(_AUDITING.items()):
        del _AUDITING[key]
        callback.end_unended(status)  # never raises


def others_log_keras_metrics(callbacks):
    """Whether MLflow logs Keras' epoch logs in this fit itself: MLflow's Keras callback
    (`mlflow.keras.MlflowCallback`, which `mlflow.keras.autolog()` also adds to every
    fit) among the fit's `callbacks` (None when they could not be read: then whether
    autolog is on for Keras)."""
    if callbacks is None:
        try:
            from mlflow.utils.autologging_utils import autologging_is_disabled

            return not autologging_is_disabled("keras")
        except Exception:  # noqa: BLE001 - an MLflow without it: regaudit logs them
            return False
    return any(type(c).__module__.split(".")[0] == "mlflow" and hasattr(c, "on_epoch_end")
               for c in callbacks)


def is_chief(model):
    """Whether this process writes the audit: True except on the non-chief workers of a
    multi-worker strategy (`MultiWorkerMirroredStrategy` with `TF_CONFIG`), whose
    variables equal the chief's. The chief is task `chief`, else `worker` 0."""
    strategy = getattr(model, "_distribute_strategy", None)
    resolver = getattr(strategy, "cluster_resolver", None)
    in_multi_worker = getattr(getattr(strategy, "extended", None), "_in_multi_worker_mode", None)
    if resolver is None or in_multi_worker is None or not in_multi_worker():
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type in (None, "chief"):
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return task_type == "worker" and not has_chief and int(task_id or 0) == 0
