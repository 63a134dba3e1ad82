"""`RegAudit`: every regaudit measure family in one callback, sharing one probe pass."""

from regaudit.callbacks.audit.arguments import ARGUMENTS_DOC
from regaudit.callbacks.audit.hooks import Audit
from regaudit.callbacks.families.activations import ActivationFamily
from regaudit.callbacks.families.ensemble import EnsembleFamily
from regaudit.callbacks.families.bn_reestimation import RemedyFamily
from regaudit.callbacks.families.shift import ShiftFamily


class RegAudit(Audit):
    """Audits how Dropout and BatchNormalization shape the model while it trains, on a fixed
    probe batch: per-layer activation statistics (`ActivationStats`), covariate shift
    (`CovariateShift`: drift, train vs validation, BatchNormalization variance shift) and
    the effective dropout ensemble (`DropoutEnsemble`: Monte-Carlo dropout against the
    weight-scaled network), logged to MLflow, and at train end the BatchNormalization
    remedy measured (`regaudit.callbacks.families.bn_reestimation`: moving statistics re-estimated on a
    copy, validation metrics before and after). One probe pass serves every measure family.

    Arguments: see `regaudit.callbacks.audit.arguments.ARGUMENTS_DOC` (appended below).

    The callback joins the active MLflow run (also the one `mlflow.keras.autolog()` opens)
    or starts one, and ends only a run it started.

    Example:

    ```python
    from regaudit import RegAudit
    model.fit(x, y, validation_split=0.1, epochs=5, callbacks=[RegAudit()])
    ```
    """

    family_types = (ActivationFamily, ShiftFamily, EnsembleFamily, RemedyFamily)


RegAudit.__doc__ += ARGUMENTS_DOC
