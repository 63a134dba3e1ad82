"""What a model output is: class probabilities, logits, a binary head, or a regression.

Decided once per output from the compiled loss (its name and `from_logits`) and the
output layer's activation (docs/measures.md, section 3, "Heads"):

| loss | from_logits | head |
|---|---|---|
| sparse/categorical cross-entropy, categorical focal | False | `probabilities` |
| the same | True | `logits` (softmax applied) |
| binary cross-entropy, binary focal, 1 unit | False | `binary_probability` (two classes 1-p, p) |
| the same | True | `binary_logits` (sigmoid applied) |
| none known | - | softmax output: `probabilities`; 1-unit sigmoid: `binary_probability`; else `regression` |

Any other loss (MSE, Huber, binary cross-entropy over several units, ...) is a
`regression` output: the ensemble measures its predictive variance.

A classification output with axes between the batch and the classes (a language model's
or a token classifier's [batch, sequence, classes], a segmentation map's [batch, height,
width, classes]) is a *per-position* head: every position is one classification, and
the measures run over the positions that are not padding (`position_mask`). It is named
`per-token logits (vocabulary 50257)` and the like (`describe_head`).
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


def describe_head(head, shape, model_class=""):
    """How the report and the tag `regaudit.heads` name an output of kind `head` whose
    deterministic values have `shape` [batch, ..., classes]: the kind itself for one
    prediction per sample (`logits`), else `per-token logits (12 classes)` for one axis
    between, `per-position ...` for more; a language model's (a class named `...LM`)
    classes are its `vocabulary`."""
    if head not in CLASSIFICATION or len(shape) <= 2:
        return head
    where = "per-token" if len(shape) == 3 else "per-position"
    classes = 2 if head.startswith("binary") else int(shape[-1])
    what = f"vocabulary {classes}" if model_class.endswith("LM") else f"{classes} classes"
    return f"{where} {head} ({what})"


def position_labels(target, positions_shape, classes):
    """Integer labels [batch, ...positions] of a per-position target: sparse labels as
    they are ([..., 1] squeezed), one-hot rows (last axis `classes`) by their argmax."""
    target = np.asarray(target)
    if target.shape == tuple(positions_shape) + (classes,) and classes > 1:
        return np.argmax(target, axis=-1)
    if target.shape == tuple(positions_shape) + (1,):
        target = target[..., 0]
    return np.rint(target.reshape(positions_shape)).astype(np.int64)


def position_mask(positions_shape, keras_mask=None, labels=None, ignore_class=None, weights=None):
    """The positions that count [batch, ...positions] (bool): not masked by Keras
    (`Embedding(mask_zero=True)` and what it flows through), not labelled with the loss's
    `ignore_class`, and of nonzero sample weight (a per-sample weight covers every
    position of its sample)."""
    keep = np.ones(positions_shape, bool)
    if keras_mask is not None:
        keep &= np.asarray(keras_mask, bool).reshape(positions_shape)
    if labels is not None and ignore_class is not None:
        keep &= np.asarray(labels) != ignore_class
    if weights is not None:
        weights = np.asarray(weights, np.float64)
        if weights.ndim > 1 and weights.shape[-1] == 1 and weights.shape != tuple(positions_shape):
            weights = weights[..., 0]
        weights = weights.reshape(weights.shape + (1,) * (len(positions_shape) - weights.ndim))
        keep &= np.broadcast_to(weights != 0, positions_shape)
    return keep
