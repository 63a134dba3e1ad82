"""Architecture lint: what a model's layers already say about Dropout and
BatchNormalization before a single step of training (no TensorFlow import here).

The rules read layer rows, the same rows `model.json` stores (`name`, `layer_class`,
`parent`, `sources` or None when the connections are unknown, `activation`, `rate`,
`momentum`, `regularizer` and `noise_sources` from `regaudit.model.regularizers`, `shape`
per sample, plus `use_bias`, `center`, `noise_shape` and `is_output`). The Keras side
(`regaudit.callbacks.lint`) makes them from a model; `regaudit.lint(model)` is the
entry point. Each rule is one small function whose docstring states the rule, its
threshold and its source; `lint_rows(..., ignore={"RA102"})` switches rules off by id.
"""

from dataclasses import asdict, dataclass

from regaudit.measures.batchnorm_lag import LAG_SHARE, initial_weight, momentum_for, steps_to_forget
from regaudit.answer.levels import ERROR, INFO, LINT_LEVELS, WARNING
from regaudit.model.layer_graph import (
    ACTIVATION_LAYERS, ancestors, is_batchnorm, is_noise_layer, moves_values, nonlinearity,
    upstream,
)
from regaudit.measures.shift import BN_DROPOUT_VAR_RATIO, BN_INIT_SHARE, BN_VAR_RATIO

#: Severities, most severe first; `--fail-on` takes one of them (or "never").
SEVERITIES = LINT_LEVELS
#: RA104: a noise rate at or above this keeps too few units to learn from.
HIGH_RATE = 0.9
#: RA107: BatchNormalization batch statistics get noisy below this many samples per batch.
SMALL_BATCH = 16
#: Layers with a bias that BatchNormalization's mean subtraction cancels.
BIASED = {"Dense", "Conv1D", "Conv2D", "Conv3D", "DepthwiseConv2D", "SeparableConv2D",
          "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose", "EinsumDense"}


@dataclass
class LintFinding:
    """One lint finding: stable rule `id`, rule name, `severity`, the `layer` path, a
    one-line `message` (what was found, what to do) and the rule's `source`."""

    id: str
    rule: str
    severity: str
    layer: str
    message: str
    source: str

    def as_dict(self):
        return asdict(self)


_DECLARED = []


def lint_rule(rule_id, severity, *, source, evidence=(), elsewhere=""):
    """Declare a lint rule: the decorated function `rule(rows, by_name, context)` returns
    its findings, made with `rule.finding(layer, message)`. The rule's id, severity
    (`regaudit.answer.levels.LINT_LEVELS`), source, the measures that confirm or contradict it at
    its layer once the model trained (`evidence`, shown beside it in the report) and what
    else speaks to it (`elsewhere`) are declared here once; `RULES`, `RULE_IDS`, the
    report's lint section and the documentation read them."""
    if severity not in LINT_LEVELS:
        raise ValueError(f"lint rule {rule_id}: severity {severity!r} is not one of {LINT_LEVELS}")

    def declare(function):
        if any(rule.id == rule_id for rule in _DECLARED):
            raise ValueError(f"lint rule id {rule_id} is declared twice")
        function.id, function.severity, function.source = rule_id, severity, source
        function.evidence, function.elsewhere = tuple(evidence), elsewhere
        function.finding = lambda layer, message: LintFinding(
            rule_id, function.__name__, severity, layer, message, source)
        _DECLARED.append(function)
        return function

    return declare


def _noise_ancestors(row, by_name):
    """The Dropout-family layers with a nonzero rate upstream of `row` along any path,
    nearest first."""
    return [r for r in ancestors(row, by_name) if is_noise_layer(r) and (r.get("rate") or 0) > 0]


@lint_rule("RA101", WARNING, source="Li et al. 2019, Understanding the disharmony between dropout and batch "
           "normalization by variance shift",
           evidence=(BN_DROPOUT_VAR_RATIO,))
def dropout_feeds_batchnorm(rows, by_name, context):
    """RA101 (warning): a Dropout-family layer with a nonzero rate upstream of a
    BatchNormalization, directly or through other layers. In training BN learns its
    moving variance from the input with that noise in it and meets the input without it
    at inference: the variance shift, which regaudit measures as `bn_dropout_var_ratio`.
    Source: Li, Chen, Hu & Yang, CVPR 2019."""
    out = []
    for row in rows:
        if not is_batchnorm(row):
            continue
        noise = _noise_ancestors(row, by_name)
        if noise:
            names = ", ".join(f"{n['name']} (rate {n['rate']:g})" for n in noise[:3])
            more = f" and {len(noise) - 3} more" if len(noise) > 3 else ""
            out.append(dropout_feeds_batchnorm.finding(
                row["name"],
                f"Dropout {names}{more} feeds BatchNormalization {row['name']}: its moving "
                "variance will not match inference (variance shift); move the Dropout after "
                "the last BatchNormalization, or re-estimate BN statistics with Dropout off."))
    return out


@lint_rule("RA102", INFO, source="Ioffe & Szegedy 2015, Batch normalization, section 3.2",
           elsewhere="claim RA254 compares both placements when both were trained")
def batchnorm_after_activation(rows, by_name, context):
    """RA102 (info): a BatchNormalization normalizes the output of a nonlinearity (a fused
    `activation=` or an activation layer). Ioffe & Szegedy put BN before the nonlinearity;
    the seed article says so too, while its own examples put it after. Which works better
    is an empirical question (the report's RA254 judges it on runs with both). Source:
    Ioffe & Szegedy, ICML 2015, section 3.2."""
    out = []
    for row in rows:
        if not is_batchnorm(row):
            continue
        producer, _ = upstream(row, by_name)
        activation = nonlinearity(producer) if producer else None
        if activation:
            out.append(batchnorm_after_activation.finding(
                row["name"],
                f"BatchNormalization {row['name']} normalizes the output of {producer['name']} "
                f"after its {activation}; to normalize before it, use "
                f"{producer['layer_class']}(activation=None), BatchNormalization(), "
                f"Activation('{activation}') and compare both placements."))
    return out


@lint_rule("RA103", WARNING, source="Keras documentation, keras.layers.Dropout")
def dropout_rate_zero(rows, by_name, context):
    """RA103 (warning): a Dropout-family layer with rate 0 does nothing: a dead
    configuration, usually a hyperparameter left at its off value. Source: Keras
    documentation of `Dropout(rate)`."""
    return [dropout_rate_zero.finding(
        row["name"],
        f"{row['layer_class']} {row['name']} has rate 0 and does nothing; set a rate or "
        "remove the layer.")
        for row in rows if is_noise_layer(row) and row.get("rate") == 0
        and row["layer_class"] not in ("GaussianNoise",)]


@lint_rule("RA104", WARNING, source="Srivastava et al. 2014, Dropout, section 7")
def dropout_rate_high(rows, by_name, context):
    """RA104 (warning): a noise source (a Dropout-family layer, attention dropout, RNN
    dropout or recurrent dropout) with rate >= 0.9 keeps at most 10% of its units, too few
    to learn from; Srivastava et al. found 0.5 for hidden and 0.2 for input units good
    choices. Source: Srivastava et al., JMLR 2014, section 7."""
    out = []
    for row in rows:
        for source in row.get("noise_sources") or ():
            if source["kind"] != "gaussian_noise" and source["rate"] >= HIGH_RATE:
                what = source["kind"].replace("_", " ")
                out.append(dropout_rate_high.finding(
                    source["name"],
                    f"{what} at {source['name']} has rate {source['rate']:g} (>= {HIGH_RATE}): "
                    "it keeps too few units to learn from; try 0.1-0.5."))
    return out


@lint_rule("RA105", ERROR, source="Srivastava et al. 2014, Dropout, section 4")
def dropout_after_output(rows, by_name, context):
    """RA105 (error): a Dropout-family layer whose output is a model output, after the
    layer that makes the predictions: in training it zeroes predictions (and scales
    probabilities above 1). Source: Srivastava et al., JMLR 2014 (dropout is applied to
    hidden and input units, never to the output)."""
    out = []
    for row in rows:
        if is_noise_layer(row) and row.get("is_output") and (row.get("rate") or 0) > 0:
            producer, _ = upstream(row, by_name)
            after = f" after {producer['name']}" if producer else ""
            out.append(dropout_after_output.finding(
                row["name"],
                f"{row['layer_class']} {row['name']} comes{after}, at the model's output: in "
                "training it zeroes predictions; remove it or move it before the output layer."))
    return out


@lint_rule("RA106", INFO, source="Ioffe & Szegedy 2015, Batch normalization, section 3.2")
def bias_before_batchnorm(rows, by_name, context):
    """RA106 (info): a layer with a bias and no activation right before a centring
    BatchNormalization: BN subtracts the mean, cancelling the bias, whose parameters are
    wasted (`use_bias=False`). Source: Ioffe & Szegedy, ICML 2015, section 3.2."""
    out = []
    for row in rows:
        if not is_batchnorm(row) or row.get("center") is False:
            continue
        producer, _ = upstream(row, by_name, through=moves_values)
        if (producer is not None and producer["layer_class"] in BIASED
                and producer.get("use_bias") and not nonlinearity(producer)):
            out.append(bias_before_batchnorm.finding(
                producer["name"],
                f"{producer['layer_class']} {producer['name']} has a bias that "
                f"BatchNormalization {row['name']} subtracts away; use use_bias=False."))
    return out


@lint_rule("RA107", WARNING, source="Wu & He 2018, Group normalization, figure 1")
def batchnorm_small_batch(rows, by_name, context):
    """RA107 (warning, when the batch size is known): BatchNormalization with fewer than
    16 samples per batch: its batch statistics are noisy and its error grows as the batch
    shrinks; GroupNormalization or LayerNormalization do not depend on it. Source: Wu &
    He, ECCV 2018 (Group Normalization), figure 1."""
    batch = context.get("batch_size")
    if not batch or batch >= SMALL_BATCH:
        return []
    return [batchnorm_small_batch.finding(
        row["name"],
        f"BatchNormalization {row['name']} trains on batches of {batch} (< {SMALL_BATCH}): its "
        "statistics are noisy; use a larger batch, or GroupNormalization/LayerNormalization.")
        for row in rows if is_batchnorm(row)]


@lint_rule("RA108", INFO, source="Tompson et al. 2015, Efficient object localization")
def spatial_dropout_fits(rows, by_name, context):
    """RA108 (info): element-wise `Dropout` on convolutional feature maps (2D or 3D maps,
    rank 3 or 4 per sample; or 1D maps, rank 2, after a Conv1D): neighbouring activations are strongly correlated, so
    dropping single values barely regularizes; SpatialDropout drops whole channels.
    Source: Tompson et al., CVPR 2015."""
    out = []
    for row in rows:
        if (row["layer_class"] != "Dropout" or row.get("regularizer") != "dropout"
                or row.get("noise_shape") is not None):
            continue  # attention dropout drops attention weights, not feature maps
        shape = row.get("shape") or ()
        conv, _ = upstream(row, by_name)
        while conv is not None and "Conv" not in conv["layer_class"] and (
                is_batchnorm(conv) or conv["layer_class"] in ACTIVATION_LAYERS):
            conv, _ = upstream(conv, by_name)
        from_conv = conv is not None and "Conv" in conv["layer_class"]
        if len(shape) in (3, 4) or (len(shape) == 2 and from_conv):
            spatial = f"SpatialDropout{len(shape) - 1}D"
            maps = f"{conv['name']}'s feature maps" if from_conv else "its feature maps"
            out.append(spatial_dropout_fits.finding(
                row["name"],
                f"Dropout {row['name']} drops single values of {maps}, which are correlated in "
                f"space; {spatial}({row.get('rate', 0):g}) drops whole "
                "channels instead."))
    return out


@lint_rule("RA109", WARNING, source="Ioffe & Szegedy 2015; Keras BatchNormalization(momentum)",
           evidence=(BN_INIT_SHARE, BN_VAR_RATIO))
def batchnorm_momentum_steps(rows, by_name, context):
    """RA109 (warning, when the planned number of training steps is known): after n steps
    the moving statistics' initial value (variance 1, mean 0) still weighs momentum ** n;
    above 1% they cannot have converged and inference uses the wrong scale. Source: the
    exponential moving average of Keras' BatchNormalization (Ioffe & Szegedy 2015)."""
    steps = context.get("steps")
    out = []
    if not steps:
        return out
    for row in rows:
        momentum = row.get("momentum")
        if not is_batchnorm(row) or momentum is None or not 0 < momentum < 1:
            continue
        left = initial_weight(momentum, steps)
        if left > LAG_SHARE:
            needed = steps_to_forget(momentum)
            lower = momentum_for(steps)
            out.append(batchnorm_momentum_steps.finding(
                row["name"],
                f"BatchNormalization {row['name']} has momentum {momentum:g}: after the "
                f"{steps} planned steps {left:.0%} of its moving statistics is still the initial "
                f"value (1% takes {needed} steps); use momentum={lower:g} or train longer."))
    return out


#: every rule, in declaration order
RULES = tuple(_DECLARED)
RULE_IDS = frozenset(rule.id for rule in RULES)


def lint_rows(rows, steps=None, batch_size=None, ignore=()):
    """Every rule's findings on layer `rows`, most severe first, in graph order; rules
    whose id is in `ignore` are skipped."""
    by_name = {row["name"]: row for row in rows}
    context = {"steps": steps, "batch_size": batch_size}
    order = {row["name"]: i for i, row in enumerate(rows)}
    found = []
    for rule in RULES:
        for finding in rule(rows, by_name, context):
            if finding.id not in ignore:
                found.append(finding)
    return sorted(found, key=lambda f: (SEVERITIES.index(f.severity), order.get(f.layer, 0)))


def counts(found):
    """{severity: number of findings} for every severity."""
    return {severity: sum(f.severity == severity for f in found) for severity in SEVERITIES}
