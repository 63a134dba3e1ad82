"""`RegAudit`: every regaudit measure family in one callback, sharing one probe pass."""

from regaudit.callbacks.activation_stats import ActivationFamily
from regaudit.callbacks.audit import Audit


class RegAudit(Audit):
    """Audits how Dropout and BatchNormalization shape the model while it trains: per-layer
    activation statistics on a fixed probe batch, logged to MLflow. One probe pass serves
    every measure family.

    Args:
        probe: `(x, y)` or `x` to audit on. Default: 512 samples of the validation data
            of `fit`, else of its training data. None.
        probe_size: samples drawn (seeded) when the probe comes from `fit`'s data. 512.
        schedule: `"epoch"`, `Every(epochs=N)`, `Every(steps=N)` or a callable epoch ->
            bool. An audit also runs before the first training step. "epoch".
        seed: seeds the probe choice and the reservoir positions. 0.
        strict: re-raise a failing measure instead of warning and switching it off. False.
        probe_batch_size: probe samples per mini-batch of the pass. 128.

    The callback joins the active MLflow run (also the one `mlflow.keras.autolog()` opens)
    or starts one, and ends only a run it started.

    Example:

    ```python
    from regaudit import RegAudit
    model.fit(x, y, validation_split=0.1, epochs=5, callbacks=[RegAudit()])
    ```
    """

    family_types = (ActivationFamily,)
