"""One walk over a model's layer graph, as its layer rows describe it (no TensorFlow).

A row is a dict (the layer table of `model.json`, lint's rows) or an object with the same
attributes (`regaudit.callbacks.probe.taps.TapInfo`): `name`, `layer_class`, `sources` (the
names of the layers feeding it; None when the connections are unknown), `regularizer`
(`regaudit.model.regularizers.regularizer_of`). The tags, the lint rules, the diagnoses and
the activation family walk the graph only through these functions.
"""

from regaudit.model.regularizers import BATCHNORM_CLASSES, NOISE_LAYER_KINDS

#: Layers that only move values around; placement rules look through them.
PASS_THROUGH = frozenset({
    "MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "AveragePooling1D", "AveragePooling2D",
    "AveragePooling3D", "Flatten", "Reshape", "Permute", "ZeroPadding1D", "ZeroPadding2D",
    "ZeroPadding3D", "Cropping1D", "Cropping2D", "Cropping3D", "GlobalAveragePooling1D",
    "GlobalAveragePooling2D", "GlobalAveragePooling3D", "GlobalMaxPooling1D",
    "GlobalMaxPooling2D", "GlobalMaxPooling3D",
})
#: Activation layers: their input is pre-activation, their output post-activation.
ACTIVATION_LAYERS = frozenset({"Activation", "ReLU", "LeakyReLU", "ELU", "PReLU", "Softmax"})


def field(row, key, default=None):
    """A row's value: a dict's entry or an object's attribute."""
    if isinstance(row, dict):
        return row.get(key, default)
    return getattr(row, key, default)


def regularizer(row):
    """The row's regularizer (`regaudit.model.regularizers.regularizer_of`); a layer table of an
    older run has none, so its class name decides."""
    if isinstance(row, dict) and "regularizer" not in row:
        if "Dropout" in row["layer_class"]:
            return "dropout"
        return "batchnorm" if row["layer_class"] in BATCHNORM_CLASSES else None
    return field(row, "regularizer")


def is_noise_layer(row):
    """A layer that only applies Dropout-family noise (identity at inference)."""
    return regularizer(row) in NOISE_LAYER_KINDS


def is_batchnorm(row):
    """A BatchNormalization layer (also `synchronized=True`)."""
    return regularizer(row) == "batchnorm"


def nonlinearity(row):
    """The nonlinearity a row applies: an activation layer's, or its fused activation
    (None for a linear layer)."""
    if field(row, "layer_class") in ACTIVATION_LAYERS:
        return field(row, "activation") or field(row, "layer_class").lower()
    activation = field(row, "activation")
    return activation if activation not in (None, "linear") else None


def moves_values(row):
    """A pooling, reshaping or cropping layer: it moves values around, computes nothing."""
    return field(row, "layer_class") in PASS_THROUGH


def passes_on(row):
    """A layer the placement rules look through: it moves values, or applies only noise."""
    return moves_values(row) or is_noise_layer(row)


def upstream(row, by_name, through=passes_on):
    """(the first layer upstream of `row` for which `through` is False, [the layers
    passed on the way, nearest first]), following single sources; (None, passed) where
    the connection is unknown, branches (a merge) or ends (a model input)."""
    passed, current, seen = [], row, {field(row, "name")}
    while True:
        sources = field(current, "sources")
        if not sources or len(sources) != 1 or sources[0] not in by_name:
            return None, passed
        current = by_name[sources[0]]
        if field(current, "name") in seen:  # a cycle in a damaged table
            return None, passed
        seen.add(field(current, "name"))
        if not through(current):
            return current, passed
        passed.append(current)


def ancestors(row, by_name):
    """Every layer upstream of `row` along any path, nearest first (breadth first over
    `sources`)."""
    found, seen, frontier = [], {field(row, "name")}, list(field(row, "sources") or ())
    while frontier:
        following = []
        for name in frontier:
            if name in seen or name not in by_name:
                continue
            seen.add(name)
            found.append(by_name[name])
            following.extend(field(by_name[name], "sources") or ())
        frontier = following
    return found
