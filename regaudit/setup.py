"""The regularization setup of a model, from its layer table: MLflow tags and grouping."""

#: Layers that only move values around; placement rules look through them.
PASS_THROUGH = {
    "MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "AveragePooling1D", "AveragePooling2D",
    "AveragePooling3D", "Flatten", "Reshape", "Permute", "ZeroPadding1D", "ZeroPadding2D",
    "ZeroPadding3D", "Cropping1D", "Cropping2D", "Cropping3D", "GlobalAveragePooling1D",
    "GlobalAveragePooling2D", "GlobalAveragePooling3D", "GlobalMaxPooling1D",
    "GlobalMaxPooling2D", "GlobalMaxPooling3D",
}


def is_dropout(row):
    return "Dropout" in row["layer_class"]


def is_batchnorm(row):
    return row["layer_class"] in ("BatchNormalization", "SyncBatchNormalization")


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
    dropouts = [row for row in layers if is_dropout(row)]
    batchnorms = [row for row in layers if is_batchnorm(row)]
    placements = sorted({batchnorm_placement(row, by_name) for row in batchnorms})
    feeding = [row["name"] for row in batchnorms if _trace_back(row, by_name)[1]]
    setup = "+".join(
        part for part, present in (("dropout", dropouts), ("batchnorm", batchnorms)) if present
    )
    return {
        "setup": setup or "none",
        "dropout_layers": len(dropouts),
        "dropout_rates": ",".join(f"{row['rate']:g}" for row in dropouts if row.get("rate") is not None),
        "batchnorm_layers": len(batchnorms),
        "batchnorm_placement": (placements[0] if len(placements) == 1 else "mixed") if placements else "none",
        "dropout_before_batchnorm": ",".join(feeding) if feeding else "none",
    }
