"""What the probe pass knows of each tap (a layer call's output), why an output is not
measured, and how many values each tap's reservoir keeps."""

from dataclasses import dataclass

import keras

from regaudit.measures.activations import RESERVOIR_SIZE

from regaudit.callbacks.backends import backend
from regaudit.callbacks.backends import keras_internals as internals


def activation_name(layer):
    """The name of a layer's fused activation function (None without one)."""
    activation = getattr(layer, "activation", None)
    return getattr(activation, "__name__", None)


@dataclass
class TapInfo:
    """What the probe pass knows of one tap, for tables and `model.json`."""

    name: str
    layer_class: str
    parent: str
    shape: tuple
    activation: str | None
    bounds: tuple | None
    sources: tuple = ()
    layer: object = None
    #: `regaudit.model.regularizers.regularizer_of` the layer, in its place
    regularizer: str | None = None
    #: the noise sources this call brings (`regaudit.model.regularizers.Source`)
    noise: tuple = ()
    #: why this output is not measured (`UNMEASURED_REASONS`), None when it is
    reason: str | None = None


#: why a layer output is not measured, as model.json and the report say it
NOT_FLOAT = "integer output"
NO_BATCH_AXIS = "no batch axis"
NOT_SELECTED = "outside the selection"
UNMEASURED_REASONS = (NOT_FLOAT, NO_BATCH_AXIS, NOT_SELECTED)


def unmeasured_reason(tensor, selected, batch_first):
    """Why an output is not measured, or None: a non-float output (`StringLookup` and
    `IntegerLookup` return int64 whatever they declare; `not_equal` a bool), an output
    with no batch axis (position embeddings, weights), a layer outside `layers=`."""
    if not backend.is_floating(tensor):
        return NOT_FLOAT if backend.is_integer(tensor) else f"{backend.dtype_name(tensor)} output"
    if not batch_first(tensor):
        return NO_BATCH_AXIS
    return None if selected else NOT_SELECTED


#: reservoir values kept over all layers together, before the per-layer floor
RESERVOIR_BUDGET = 2**21
RESERVOIR_FLOOR = 8_192


def reservoir_size_for(model):
    """Values kept per layer: RESERVOIR_SIZE (65,536) while the layers' reservoirs fit in
    RESERVOIR_BUDGET (2M values, 32 layers), else the budget shared out, at least
    RESERVOIR_FLOOR (8,192; ResNet50: 11,915; DenseNet121: 8,192). Layers are those
    whose outputs can be measured (every layer but the Input layers). The KS statistic's
    resolution is about 1/sqrt(size): 0.004 at 65,536, 0.011 at 8,192."""
    layers = sum(1 for layer in internals.sublayers(model)
                 if not isinstance(layer, keras.layers.InputLayer))
    return int(min(RESERVOIR_SIZE, max(RESERVOIR_FLOOR, RESERVOIR_BUDGET // max(layers, 1))))
