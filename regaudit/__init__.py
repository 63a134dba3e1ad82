"""regaudit: measure how Dropout and BatchNormalization shape a Keras model as it trains.

Importing regaudit does not import TensorFlow; `regaudit.RegAudit`, `regaudit.Every` and
`regaudit.lint(model)` load the Keras side on first use, `regaudit.load_run(s)` the read API (MLflow, pandas),
`regaudit.study(...)` a study's runner (`regaudit.studies`; Ray Tune).
"""

import os as _os

# In the source tree (a clone's root on sys.path, as for a script run there or Ray's
# workers, which put the driver's working directory first), `callbacks/` and `reports/`
# sit beside this folder, not inside it: the installed package maps them to
# `regaudit.callbacks` and `regaudit.reports` (pyproject's package-dir). The clone's root
# joins this package's search path so both trees resolve the same names. Installed,
# the subpackages are inside this folder and found first.
_HERE = _os.path.dirname(_os.path.abspath(__file__))
_ROOT = _os.path.dirname(_HERE)
if (not _os.path.isdir(_os.path.join(_HERE, "callbacks"))
        and _os.path.isfile(_os.path.join(_ROOT, "callbacks", "__init__.py"))
        and _os.path.isfile(_os.path.join(_ROOT, "reports", "__init__.py"))):
    __path__.append(_ROOT)  # noqa: F821 (the package's own __path__)

from regaudit._version import __version__  # noqa: E402
from regaudit.errors import RegauditError, RegauditWarning, UsageError  # noqa: E402

_KERAS_SIDE = ("RegAudit", "ActivationStats", "CovariateShift", "DropoutEnsemble", "Every", "lint",
               "reestimate_batchnorm")
_READ_SIDE = ("load_run", "load_runs")
_STUDY_SIDE = ("study",)

__all__ = ["RegauditError", "RegauditWarning", "UsageError", "__version__", *_KERAS_SIDE,
           *_READ_SIDE, *_STUDY_SIDE]


def __getattr__(name):
    if name == "lint":
        from regaudit.callbacks.lint import lint

        return lint
    if name == "reestimate_batchnorm":
        from regaudit.callbacks.families.bn_reestimation import reestimate_batchnorm

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
