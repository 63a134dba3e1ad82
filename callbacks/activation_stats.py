"""`ActivationStats`: per-layer activation statistics on the probe (docs/measures.md, section 1)."""

from regaudit.callbacks.audit.arguments import ARGUMENTS_DOC
from regaudit.callbacks.audit.hooks import Audit
from regaudit.callbacks.families.activations import ActivationFamily


class ActivationStats(Audit):
    """Records per-layer activation statistics on a fixed probe batch and logs them to
    MLflow (metrics `regaudit/<layer>/<measure>`, everything in Parquet under `regaudit/`).

    Arguments: see `regaudit.callbacks.audit.arguments.ARGUMENTS_DOC` (appended below).

    Example:

    ```python
    model.fit(x, y, epochs=5, callbacks=[regaudit.callbacks.ActivationStats()])
    ```
    """

    family_types = (ActivationFamily,)


ActivationStats.__doc__ += ARGUMENTS_DOC
