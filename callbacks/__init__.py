"""The Keras side of regaudit: callbacks that audit a model on a probe while it trains."""

from regaudit.callbacks.activation_stats import ActivationStats
from regaudit.callbacks.audit.hooks import Audit
from regaudit.callbacks.covariate_shift import CovariateShift
from regaudit.callbacks.dropout_ensemble import DropoutEnsemble
from regaudit.callbacks.regaudit_callback import RegAudit
from regaudit.callbacks.audit.schedule import Every

__all__ = ["ActivationStats", "Audit", "CovariateShift", "DropoutEnsemble", "Every", "RegAudit"]
