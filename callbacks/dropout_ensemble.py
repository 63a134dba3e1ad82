"""`DropoutEnsemble`: the implicit ensemble Dropout trains, sampled with Monte-Carlo
dropout and set against the single weight-scaled network Keras uses at inference
(docs/measures.md, section 3)."""

from regaudit.callbacks.audit.arguments import ARGUMENTS_DOC
from regaudit.callbacks.audit.hooks import Audit
from regaudit.callbacks.families.ensemble import EnsembleFamily


class DropoutEnsemble(Audit):
    """Measures the implicit ensemble Dropout trains (Srivastava et al. 2014) on the probe
    at every audit: T Monte-Carlo samples with only the Dropout layers on (Gal &
    Ghahramani 2016), through a twin of the model that shares its layer objects and draws
    its own stateless masks, so the model's dropout seed state and BatchNormalization
    statistics never move. The T samples run batched in one call per probe chunk.
    Records accuracy and NLL of the deterministic (weight-scaled) network and of the MC
    average, the gap between them, accuracy of the mean of k samples (`acc_at_k:<k>`),
    single-member accuracy, disagreement, predictive and expected entropy, mutual
    information, calibration (ECE), the effective ensemble size `n_eff`, and per Dropout
    layer the measured drop fraction; at train end, each Dropout layer's own
    `disagreement_only` / `mutual_info_only` and an accuracy-against-k plot. Without
    labels only the label-free measures; regression outputs get the predictive variance.

    Defaults keep the audit cheap: T = `mc_samples` = 8 on the first
    `ensemble_probe_size` = 128 probe samples at every audit (k = 1, 2, 4, 8 on the
    accuracy-against-k curve); `mc_samples=32` or more draws the curve further for T
    times the cost of one forward pass over those samples.

    Example:

    ```python
    model.fit(x, y, validation_split=0.1, callbacks=[DropoutEnsemble(mc_samples=32)])
    ```
    """

    family_types = (EnsembleFamily,)


DropoutEnsemble.__doc__ += ARGUMENTS_DOC
