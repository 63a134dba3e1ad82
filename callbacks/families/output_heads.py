"""The head of each model output, read from the compiled loss and the output layer
(`output_heads`), and the probe's targets and labels paired with the outputs: what the
ensemble family needs to score a prediction."""

import keras
import numpy as np

from regaudit.measures import heads as heads_module


def _output_layers(model):
    """The layer producing each flattened model output (None where unknown: a subclassed
    model)."""
    layers = []
    for tensor in keras.tree.flatten(getattr(model, "outputs", None) or []):
        history = getattr(tensor, "_keras_history", None)
        layers.append(history[0] if history else None)
    return layers


def loss_of(loss, index, name):
    """The compiled loss of output `index` (named `name`): a list's index-th, a dict's
    entry, else the loss itself; as (name, from_logits, ignore_class)."""
    if isinstance(loss, dict):
        loss = loss.get(name)
    elif isinstance(loss, (list, tuple)):
        loss = loss[index] if index < len(loss) else None
    if loss is None:
        return None, None, None
    if isinstance(loss, str):
        return loss, None, None
    config = loss.get_config() if hasattr(loss, "get_config") else {}
    from_logits = getattr(loss, "from_logits", config.get("from_logits"))
    ignore_class = getattr(loss, "ignore_class", config.get("ignore_class"))
    return getattr(loss, "__name__", type(loss).__name__), from_logits, ignore_class


def output_heads(model, det, targets=None):
    """The head of every flattened output (`regaudit.measures.heads.head_kind`), from the loss
    `compile` was given and the output layer's activation; `det`: the deterministic
    outputs, for their widths. A per-position binary head whose targets are not all 0 or
    1 (a VAE's or an autoencoder's pixel intensities under binary cross-entropy) is a
    `regression`: there is no class to be right about."""
    targets = targets or [None] * len(det)
    names = list(getattr(model, "output_names", None) or [])
    layers = _output_layers(model)
    heads = []
    for index, values in enumerate(det):
        name = names[index] if index < len(names) else None
        loss_name, from_logits, _ = loss_of(getattr(model, "loss", None), index, name)
        layer = layers[index] if index < len(layers) else None
        activation = getattr(getattr(layer, "activation", None), "__name__", None)
        # the classes are the last axis, after any sequence or spatial axes
        units = values.shape[-1] if values.ndim >= 2 else None
        head = heads_module.head_kind(loss_name, from_logits, activation, units)
        target = targets[index] if index < len(targets) else None
        if head.startswith("binary") and values.ndim > 2 and target is not None \
                and not np.all(np.isin(np.asarray(target), (0, 1))):
            head = "regression"
        heads.append(head)
    return heads


def paired_targets(model, targets, outputs):
    """The probe's targets paired with the flattened outputs: by name for a dict, by
    position for a list (None where there is none)."""
    if targets is None:
        return [None] * outputs
    if isinstance(targets, dict):
        names = list(getattr(model, "output_names", None) or [])
        return [targets.get(name) for name in names[:outputs]] + [None] * (outputs - len(names))
    flat = keras.tree.flatten(targets)
    return flat if len(flat) == outputs else [None] * outputs


def ignore_class(model, index):
    """The compiled loss's `ignore_class` for output `index` (None if it has none)."""
    names = list(getattr(model, "output_names", None) or [])
    name = names[index] if index < len(names) else None
    return loss_of(getattr(model, "loss", None), index, name)[2]


def class_labels(target, classes):
    target = np.asarray(target)
    if target.ndim >= 2 and target.shape[-1] == classes and classes > 2:
        return np.argmax(target, axis=-1)  # one-hot
    if target.ndim >= 2 and target.shape[-1] == classes == 2 and np.all(np.isin(target, (0, 1))) \
            and np.all(target.sum(-1) == 1):
        return np.argmax(target, axis=-1)  # one-hot over two classes
    return np.rint(target.reshape(len(target))).astype(np.int64)
