"""Gradient-based internal covariate shift (Santurkar, Tsipras, Ilyas & Madry, NeurIPS 2018).

For each layer i with weights (Dense, Conv, ...): G is the gradient of the loss with
respect to layer i's trainable weights on one probe batch; G' is the same gradient after
every earlier layer has taken one plain gradient step (learning rate: the optimizer's
current one) on that batch. `ics_l2` = ||G - G'||_2 and `ics_cos` = cos(G, G')
(`regaudit.measures.shift.ics_l2`, `ics_cos`). The model runs in inference mode, so
BatchNormalization normalizes with its moving statistics (Santurkar et al. used batch
statistics; training mode would move the moving statistics). Every trial step is undone
by assigning back the exact saved values: the model ends bit-identical. Costs one
forward and backward pass per layer with weights, so it is off by default. The
gradients come from each backend's own autodiff (`_gradients`).
"""

import keras
import numpy as np

from regaudit.measures.shift import ics_cos, ics_l2

from regaudit.callbacks.backends import backend


def _learning_rate(optimizer):
    """The current learning rate (a variable, or a schedule's value at this step)."""
    rate = optimizer.learning_rate
    return float(rate.numpy() if hasattr(rate, "numpy") else rate)


def _weighted_layers(taps):
    """Layers with trainable weights, in the graph's order, each once."""
    seen, layers = set(), []
    for tap in taps:
        layer = tap.layer
        if id(layer) not in seen and layer.trainable_weights:
            seen.add(id(layer))
            layers.append((tap.name, layer))
    return layers


def _loss(model, x, y):
    prediction = model(x, training=False)
    return model.compute_loss(x=x, y=y, y_pred=prediction, training=False)


def _gradients(model, x, y, variables):
    """The loss's gradients with respect to `variables` (numpy), in inference mode
    (`backend.gradients`: a `tf.GradientTape`, `torch.autograd.grad`, or `jax.grad`
    through a `StatelessScope`: nothing is assigned)."""
    return backend.gradients(lambda: _loss(model, x, y), variables)


def gradient_ics(model, probe, taps, batch_size):
    """{layer: (ics_l2, ics_cos, layer class)} of the weighted layers among `taps` on the
    first mini-batch of `batch_size` samples of `probe` (a `ProbeData`); empty when the
    probe has no labels or the model no optimizer."""
    if probe.targets is None or getattr(model, "optimizer", None) is None:
        return {}
    size = min(batch_size, probe.size)
    x = keras.tree.map_structure(lambda a: a[:size], probe.inputs)
    y = keras.tree.map_structure(lambda a: a[:size], probe.targets)
    layers = _weighted_layers(taps)
    rate = _learning_rate(model.optimizer)
    # compute_loss may update per-output loss trackers: keep them as they were
    tracked = list(model.metrics_variables)
    saved_metrics = [backend.host(v) for v in tracked]
    every = [v for _, layer in layers for v in layer.trainable_weights]
    saved = [backend.host(v) for v in every]
    try:
        first = list(_gradients(model, x, y, every))
        out, offset = {}, 0
        for name, layer in layers:
            own = list(layer.trainable_weights)
            count = len(own)
            before = slice(0, offset)
            g = np.concatenate([np.ravel(t) for t in first[offset : offset + count]])
            for variable, grad in zip(every[before], first[before]):
                variable.assign(backend.host(variable) - rate * grad)
            moved = _gradients(model, x, y, own)
            g_prime = np.concatenate([np.ravel(t) for t in moved])
            for variable, value in zip(every[before], saved[before]):
                variable.assign(value)
            out[name] = (ics_l2(g, g_prime), ics_cos(g, g_prime), type(layer).__name__)
            offset += count
        return out
    finally:
        for variable, value in zip(every, saved):
            variable.assign(value)
        for variable, value in zip(tracked, saved_metrics):
            variable.assign(value)
