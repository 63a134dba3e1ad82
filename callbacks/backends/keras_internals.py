"""Every access regaudit makes to Keras' private API, in one place (Keras 3.4-3.15).

- the Functional graph: `_nodes_by_depth`, `_standardize_inputs`, `_outputs_struct`,
  `node.arguments.fill_in`, Sequential's `_functional`;
- the layer-call hook: `Layer.__call__` is wrapped for the duration of one trace
  (`intercepted_calls`), so the calls a custom layer, a MultiHeadAttention or a
  subclassed model makes to its sublayers can be seen and, in the twin, replaced. The
  model object itself is never touched;
- Keras' call context (the `training` value a layer call hands down to the sublayers
  that do not get one explicitly);
- RNN cells' dropout masks (`DropoutRNNCell.get_dropout_mask` /
  `get_recurrent_dropout_mask`), replaced for the duration of a twin trace;
- `Layer._flatten_layers` (every sublayer, recursively), SpatialDropout's
  `_get_noise_shape`;
- the fit's `CallbackList` (`fit_callbacks`: which callbacks share the fit);
- a tensor's Keras mask (`get_keras_mask` / `set_keras_mask`: padding positions from
  `Embedding(mask_zero=True)`, carried from layer to layer by `Layer.__call__`).
"""

import contextlib
import threading

import keras
from keras.src.backend.common import global_state
from keras.src.backend.common.masking import get_keras_mask, set_keras_mask
from keras.src.layers.layer import Layer
from keras.src.layers.rnn.dropout_rnn_cell import DropoutRNNCell
from keras.src.models.functional import Functional

__all__ = ["Functional", "get_keras_mask", "set_keras_mask", "intercepted_calls", "sublayers", "rnn_masks", "no_rnn_masks", "restoring_training",
           "spatial_noise_shape", "defines_call", "fit_callbacks"]

_ORIGINAL_CALL = Layer.__call__
_LOCK = threading.RLock()
_STATE = threading.local()


def _hooked_call(self, *args, **kwargs):
    handler = getattr(_STATE, "handler", None)
    if handler is None:
        return _ORIGINAL_CALL(self, *args, **kwargs)
    return handler(self, args, kwargs)


def original_call(layer, *args, **kwargs):
    """`layer(*args, **kwargs)` through Keras' own `Layer.__call__`, never the hook (an
    operation of a Functional graph that is no Layer, such as `not_equal`, as it is)."""
    if not isinstance(layer, Layer):
        return layer(*args, **kwargs)
    return _ORIGINAL_CALL(layer, *args, **kwargs)


@contextlib.contextmanager
def intercepted_calls(handler):
    """While the block runs (one trace, on this thread), every `Layer.__call__` goes to
    `handler(layer, args, kwargs)`; `handler` may set `suspended` (see `suspended_hook`)
    around calls it does not want to see. Restored on exit, also after an error."""
    with _LOCK:
        previous = getattr(_STATE, "handler", None)
        _STATE.handler = handler
        Layer.__call__ = _hooked_call
        try:
            yield
        finally:
            _STATE.handler = previous
            if previous is None:
                Layer.__call__ = _ORIGINAL_CALL


@contextlib.contextmanager
def suspended_hook():
    """Calls inside the block go straight to Keras (an RNN's cell inside its loop)."""
    previous = getattr(_STATE, "handler", None)
    _STATE.handler = None
    try:
        yield
    finally:
        _STATE.handler = previous


@contextlib.contextmanager
def restoring_training():
    """Keras' call context keeps the `training` value of the last explicit call for the
    sublayers called after it without one: put it back after a call made with
    `training=True` (the twin's RNN), so nothing after it runs in training mode."""
    context = global_state.get_global_attribute("current_call_ctx")
    before = None if context is None else context.get_value("training")
    try:
        yield
    finally:
        if context is not None:
            context.set_value("training", before)


_MASKS = threading.local()


def _mask(cell, step_input, which):
    make = getattr(_MASKS, "make", None)
    return make(cell, step_input, which)


@contextlib.contextmanager
def rnn_masks(make):
    """While the block runs, an RNN cell's dropout masks come from
    `make(cell, step_input, "dropout" | "recurrent_dropout")` (None: no mask), not from
    the cell's seed generator, and nothing is cached on the cell."""
    with _LOCK:
        saved = (DropoutRNNCell.get_dropout_mask, DropoutRNNCell.get_recurrent_dropout_mask,
                 getattr(_MASKS, "make", None))
        _MASKS.make = make
        DropoutRNNCell.get_dropout_mask = lambda cell, x: _mask(cell, x, "dropout")
        DropoutRNNCell.get_recurrent_dropout_mask = lambda cell, x: _mask(cell, x, "recurrent_dropout")
        try:
            yield
        finally:
            DropoutRNNCell.get_dropout_mask, DropoutRNNCell.get_recurrent_dropout_mask, _MASKS.make = saved


def no_rnn_masks():
    """An RNN layer in inference mode still draws its cell's dropout masks from the
    cell's seed generator (Keras prepares them before the loop whatever `training` is),
    which advances the model's seed state: inside this block it draws none. Within a
    `rnn_masks` block (the twin) that block's masks stay."""
    if getattr(_MASKS, "make", None) is not None:
        return contextlib.nullcontext()
    return rnn_masks(lambda cell, x, which: None)


def sublayers(layer):
    """Every layer inside `layer`, recursively (itself excluded)."""
    return layer._flatten_layers(include_self=False) if hasattr(layer, "_flatten_layers") else []


def spatial_noise_shape(layer, x):
    """SpatialDropout1D/2D/3D's noise shape (whole channels), or None."""
    return layer._get_noise_shape(x) if hasattr(layer, "_get_noise_shape") else None


def defines_call(model):
    """Whether a model can be called for inference: a Functional or Sequential model, or
    a subclass whose class defines `call` (a model trained only through `train_step`
    does not)."""
    if isinstance(model, (Functional, keras.Sequential)):
        return True
    return type(model).call is not keras.Model.call


def layer_tree(model):
    """(path, layer, parent layer) for every layer inside `model`, depth first, without
    calling it: what a model that cannot be called for inference still tells."""
    out = []

    def visit(layer, prefix, parent):
        for child in getattr(layer, "_layers", []):
            if isinstance(child, keras.layers.InputLayer):
                continue
            out.append((prefix + child.name, child, parent))
            visit(child, prefix + child.name + "/", child)

    visit(model, "", None)
    return out


def fit_callbacks(callback, depth=8):
    """The callbacks of the fit `callback` is in, read from the `CallbackList` calling its
    hook (`CallbackList.callbacks`, a few frames up the stack), or None when it cannot be
    found (a hook called by hand)."""
    import sys

    from keras.src.callbacks.callback_list import CallbackList

    frame = sys._getframe(1)
    for _ in range(depth):
        if frame is None:
            return None
        owner = frame.f_locals.get("self")
        if isinstance(owner, CallbackList) and any(c is callback for c in owner.callbacks):
            return list(owner.callbacks)
        frame = frame.f_back
    return None
