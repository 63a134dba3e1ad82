"""The regularization setup of a model, from its layer table: MLflow tags and grouping."""

from regaudit.regularizers import NOISE_LAYER_KINDS

#: Layers that only move values around; placement rules look through them.
PASS_THROUGH = {
    "MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "AveragePooling1D", "AveragePooling2D",
    "AveragePooling3D", "Flatten", "Reshape", "Permute", "ZeroPadding1D", "ZeroPadding2D",
    "ZeroPadding3D", "Cropping1D", "Cropping2D", "Cropping3D", "GlobalAveragePooling1D",
    "GlobalAveragePooling2D", "GlobalAveragePooling3D", "GlobalMaxPooling1D",
    "GlobalMaxPooling2D", "GlobalMaxPooling3D",
}


#: Layers whose output at inference is their input, rearranged or untouched (same values,
#: same distribution): per-layer figures and the drift ranking leave them out.
REARRANGING = frozenset({"Flatten", "Reshape", "Permute"})


def repeats_input(layer_class, regularizer=None):
    """Whether a layer's inference output repeats its input's values: a reshaping layer,
    or a Dropout-family noise layer (identity in inference mode)."""
    return layer_class in REARRANGING or regularizer in NOISE_LAYER_KINDS or (
        "Dropout" in str(layer_class) or layer_class == "GaussianNoise")


def _regularizer(row):
    """The row's regularizer (`regaudit.regularizers.regularizer_of`); a layer table of
    an older run has none, so its class name decides."""
    if "regularizer" in row:
        return row["regularizer"]
    if "Dropout" in row["layer_class"]:
        return "dropout"
    if row["layer_class"] in ("BatchNormalization", "SyncBatchNormalization"):
        return "batchnorm"
    return None


def is_dropout(row):
    """A layer that only applies Dropout-family noise (placement rules look through it)."""
    return _regularizer(row) in NOISE_LAYER_KINDS


def noise_rates(row):
    """The rates of the noise sources a row brings: an RNN layer's nonzero dropout and
    recurrent dropout; a Dropout-family layer's rate (0 included: it is still a Dropout
    layer, a dead one)."""
    if row.get("noise_sources"):
        return [source["rate"] for source in row["noise_sources"]]
    return [row["rate"]] if is_dropout(row) and row.get("rate") is not None else []


def is_batchnorm(row):
    return _regularizer(row) == "batchnorm"


def _trace_back(row, by_name):
    """The first layer upstream of `row` that computes something (not a pooling or
    reshape), and whether a Dropout lies on the way."""
    dropout_seen = False
    current = row
    while True:
        sources = [by_name[s] for s in current.get("sources", ()) if s in by_name]
        if len(sources) != 1:
            return None, dropout_seen
        current = sources[0]
        if is_dropout(current):
            dropout_seen = True
            continue
        if current["layer_class"] in PASS_THROUGH:
            continue
        return current, dropout_seen


def batchnorm_placement(row, by_name):
    """'after_activation' when the BN input comes from a nonlinearity (a fused
    activation or an Activation layer), 'before_activation' when it comes from a linear
    layer, 'unknown' otherwise (a merge, a model input)."""
    producer, _ = _trace_back(row, by_name)
    if producer is None:
        return "unknown"
    activation = producer.get("activation")
    if producer["layer_class"] in ("Activation", "ReLU", "LeakyReLU", "ELU", "PReLU", "Softmax"):
        return "after_activation"
    if activation in (None, "linear"):
        return "before_activation"
    return "after_activation"


def regularization_tags(layers):
    """MLflow tags (without the `regaudit.` prefix) describing dropout and batch
    normalization in the layer table `layers` (dicts with name, layer_class, activation,
    rate, sources)."""
    by_name = {row["name"]: row for row in layers}
    dropouts = [row for row in layers if noise_rates(row)]
    batchnorms = [row for row in layers if is_batchnorm(row)]
    placements = sorted({batchnorm_placement(row, by_name) for row in batchnorms})
    feeding = [row["name"] for row in batchnorms if _trace_back(row, by_name)[1]]
    setup = "+".join(
        part for part, present in (("dropout", dropouts), ("batchnorm", batchnorms)) if present
    )
    return {
        "setup": setup or "none",
        "dropout_layers": len(dropouts),
        "dropout_rates": ",".join(f"{rate:g}" for row in dropouts for rate in noise_rates(row)),
        "batchnorm_layers": len(batchnorms),
        "batchnorm_placement": (placements[0] if len(placements) == 1 else "mixed") if placements else "none",
        "dropout_before_batchnorm": ",".join(feeding) if feeding else "none",
    }
