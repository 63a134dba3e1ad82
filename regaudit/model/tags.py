"""The regularization setup of a model, from its layer table: MLflow tags and grouping."""

from regaudit.model.layer_graph import is_batchnorm, is_noise_layer, nonlinearity, upstream
from regaudit.model.regularizers import NOISE_LAYER_KINDS

#: Layers whose output at inference is their input, rearranged or untouched (same values,
#: same distribution): per-layer figures and the drift ranking leave them out.
REARRANGING = frozenset({"Flatten", "Reshape", "Permute"})


def repeats_input(layer_class, regularizer=None):
    """Whether a layer's inference output repeats its input's values: a reshaping layer,
    or a Dropout-family noise layer (identity in inference mode)."""
    return layer_class in REARRANGING or regularizer in NOISE_LAYER_KINDS or (
        "Dropout" in str(layer_class) or layer_class == "GaussianNoise")


def noise_rates(row):
    """The rates of the noise sources a row brings: an RNN layer's nonzero dropout and
    recurrent dropout; a Dropout-family layer's rate (0 included: it is still a Dropout
    layer, a dead one)."""
    if row.get("noise_sources"):
        return [source["rate"] for source in row["noise_sources"]]
    return [row["rate"]] if is_noise_layer(row) and row.get("rate") is not None else []


def _trace_back(row, by_name):
    """The first layer upstream of `row` that computes something (not a pooling, a
    reshape or a noise layer), and whether a Dropout-family layer lies on the way."""
    producer, passed = upstream(row, by_name)
    return producer, any(is_noise_layer(p) for p in passed)


def batchnorm_placement(row, by_name):
    """'after_activation' when the BN input comes from a nonlinearity (a fused
    activation or an Activation layer), 'before_activation' when it comes from a linear
    layer, 'unknown' otherwise (a merge, a model input)."""
    producer, _ = _trace_back(row, by_name)
    if producer is None:
        return "unknown"
    return "after_activation" if nonlinearity(producer) else "before_activation"


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
