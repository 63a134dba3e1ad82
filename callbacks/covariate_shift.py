"""`CovariateShift`: drift over training, train vs validation, BatchNormalization variance
shift, and (optional) gradient-based internal covariate shift (docs/measures.md, section 2)."""

from regaudit.callbacks.audit.arguments import ARGUMENTS_DOC
from regaudit.callbacks.audit.hooks import Audit
from regaudit.callbacks.families.shift import ShiftFamily


class CovariateShift(Audit):
    """Measures covariate shift at every layer while the model trains: how each layer's
    distribution drifts between audits and from the first audit (Ioffe & Szegedy 2015),
    how the training and validation probes differ at each layer, the variance shift that
    BatchNormalization meets at inference, and the share of it that Dropout placed
    before BN causes (Li et al. 2019); optionally the gradient-based internal covariate
    shift of Santurkar et al. (2018). Logged to MLflow as `regaudit/<layer>/drift_w1`,
    `tv_w1`, `bn_var_ratio`, `bn_dropout_var_ratio` (and `ics_cos`), everything in
    `regaudit/shift/*.parquet`.

    Example:

    ```python
    model.fit(x, y, validation_data=(xv, yv), callbacks=[CovariateShift()])
    ```
    """

    family_types = (ShiftFamily,)


CovariateShift.__doc__ += ARGUMENTS_DOC
