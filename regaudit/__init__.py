"""regaudit: measure how Dropout and BatchNormalization shape a Keras model as it trains.

Importing regaudit does not import TensorFlow; `regaudit.RegAudit` and `regaudit.Every`
load the Keras side on first use.
"""

from regaudit._version import __version__
from regaudit.errors import RegauditError, RegauditWarning, UsageError

_KERAS_SIDE = ("RegAudit", "ActivationStats", "CovariateShift", "DropoutEnsemble", "Every")

__all__ = ["RegauditError", "RegauditWarning", "UsageError", "__version__", *_KERAS_SIDE]


def __getattr__(name):
    if name in _KERAS_SIDE:
        from regaudit import callbacks

        return getattr(callbacks, name)
    raise AttributeError(f"module 'regaudit' has no attribute {name!r}")
