"""regaudit: measure how Dropout and BatchNormalization shape a Keras model as it trains.

Importing regaudit does not import TensorFlow; `regaudit.RegAudit`, `regaudit.Every` and
`regaudit.lint(model)` load the Keras side on first use, `regaudit.load_run(s)` the read API (MLflow, pandas),
`regaudit.study(...)` a study's runner (`regaudit.studies`; Ray Tune).
"""

from regaudit._version import __version__
from regaudit.errors import RegauditError, RegauditWarning, UsageError

_KERAS_SIDE = ("RegAudit", "ActivationStats", "CovariateShift", "DropoutEnsemble", "Every", "lint",
               "reestimate_batchnorm")
_READ_SIDE = ("load_run", "load_runs")
_STUDY_SIDE = ("study",)

__all__ = ["RegauditError", "RegauditWarning", "UsageError", "__version__", *_KERAS_SIDE,
           *_READ_SIDE, *_STUDY_SIDE]


def __getattr__(name):
    if name == "lint":
        from regaudit.callbacks.lint_model import lint

        return lint
    if name == "reestimate_batchnorm":
        from regaudit.callbacks.remedy import reestimate_batchnorm

        return reestimate_batchnorm
    if name in _KERAS_SIDE:
        from regaudit import callbacks

        return getattr(callbacks, name)
    if name in _STUDY_SIDE:
        from regaudit import studies

        return getattr(studies, name)
    if name in _READ_SIDE:
        from regaudit import read

        return getattr(read, name)
    raise AttributeError(f"module 'regaudit' has no attribute {name!r}")
