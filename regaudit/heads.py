"""What a model output is: class probabilities, logits, a binary head, or a regression.

Decided once per output from the compiled loss (its name and `from_logits`) and the
output layer's activation (MEASURES.md section 3, "Heads"):

| loss | from_logits | head |
|---|---|---|
| sparse/categorical cross-entropy, categorical focal | False | `probabilities` |
| the same | True | `logits` (softmax applied) |
| binary cross-entropy, binary focal, 1 unit | False | `binary_probability` (two classes 1-p, p) |
| the same | True | `binary_logits` (sigmoid applied) |
| none known | - | softmax output: `probabilities`; 1-unit sigmoid: `binary_probability`; else `regression` |

Any other loss (MSE, Huber, binary cross-entropy over several units, ...) is a
`regression` output: the ensemble measures its predictive variance.
"""

import numpy as np

CLASSIFICATION = ("probabilities", "logits", "binary_probability", "binary_logits")

_CATEGORICAL = ("categorical_crossentropy", "categoricalcrossentropy", "categorical_focal",
                "categoricalfocal")
_BINARY = ("binary_crossentropy", "binarycrossentropy", "binary_focal", "binaryfocal")


def _normal(name):
    return (name or "").lower().replace("sparse_", "").replace("sparse", "")


def head_kind(loss_name, from_logits, activation, units):
    """The head of one output (see the module docstring). `loss_name`: the compiled
    loss's name or class name (None if unknown); `from_logits`: its flag (None if it has
    none); `activation`: the output layer's activation name; `units`: the last axis."""
    name = _normal(loss_name)
    if any(key in name for key in _CATEGORICAL) and units and units > 1:
        return "logits" if from_logits else "probabilities"
    if any(key in name for key in _BINARY) and units == 1:
        return "binary_logits" if from_logits else "binary_probability"
    if loss_name is None or name in ("", "none"):
        if activation == "softmax" and units and units > 1:
            return "probabilities"
        if activation == "sigmoid" and units == 1:
            return "binary_probability"
    return "regression"


def _softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def as_probabilities(values, head):
    """Class probabilities [..., classes] of an output of kind `head` (float64); a binary
    head gives two classes (1 - p, p). None for a regression output."""
    values = np.asarray(values, np.float64)
    if head == "probabilities":
        return values
    if head == "logits":
        return _softmax(values)
    if head in ("binary_probability", "binary_logits"):
        p = 1.0 / (1.0 + np.exp(-values)) if head == "binary_logits" else values
        return np.concatenate([1.0 - p, p], axis=-1)  # [..., 1] -> [..., 2]
    return None
