"""The one definition of the regularizers regaudit knows, wherever they sit in a model.

Used by the tags (`regaudit.setup`), the probe pass and its twin, the dropout ensemble
and the architecture lint. No TensorFlow import: a layer is recognised by the names of
the classes in its MRO (so a subclass of `Dropout` is a Dropout) and read through plain
attributes (`rate`, `stddev`, `dropout`, `recurrent_dropout`, `cell`).

Kinds of noise source (docs/measures.md, section 3):

| kind | layers | noise the twin draws (stateless, its own seed per source) | "dropped" |
|---|---|---|---|
| `dropout` | Dropout, SpatialDropout1D/2D/3D (whole channels) | keep ~ Bernoulli(1 - rate), x * keep / (1 - rate) | `drop_frac_measured` vs rate |
| `attention_dropout` | the Dropout inside MultiHeadAttention (on the attention weights) | as `dropout` | `drop_frac_measured` vs rate |
| `alpha_dropout` | AlphaDropout | Klambauer et al.: a(x keep + alpha' (1 - keep)) + b | `drop_frac_measured` (masked positions) vs rate |
| `gaussian_dropout` | GaussianDropout | x * m, m ~ N(1, rate / (1 - rate)) | `noise_var_measured`: Var(m) vs rate / (1 - rate) |
| `gaussian_noise` | GaussianNoise | x + n, n ~ N(0, stddev^2) | `noise_var_measured`: Var(n) vs stddev^2 |
| `rnn_dropout`, `rnn_recurrent_dropout` | an RNN layer's cell `dropout` / `recurrent_dropout` (LSTM, GRU, SimpleRNN, their cells, Bidirectional's layers) | the cell's masks, one per sequence (Gal & Ghahramani 2016) | `drop_frac_measured` vs rate |

BatchNormalization (also `synchronized=True`) is the other regularizer: the twin keeps
it in inference mode, always.
"""

from dataclasses import dataclass

from regaudit.measures.registry import FRACTION, SOURCE, UNITLESS, declare
from regaudit.schema import TABLE_ENSEMBLE

DROP_FRAC = declare(
    "drop_frac_measured", table=TABLE_ENSEMBLE, scope=SOURCE, unit=FRACTION, headline=True,
    doc="""drop_frac_measured = zeroed inputs / inputs of a masking noise source (Dropout,
    SpatialDropout, attention dropout, RNN dropout; AlphaDropout's masked positions count as
    dropped) over the Monte-Carlo samples, against its nominal `rate`.""")
NOISE_VAR = declare(
    "noise_var_measured", table=TABLE_ENSEMBLE, scope=SOURCE, unit=UNITLESS, headline=True,
    doc="""noise_var_measured = the measured variance of a multiplicative or additive noise
    source's noise over the Monte-Carlo samples: GaussianDropout's multiplier against
    rate / (1 - rate), GaussianNoise's addend against stddev^2.""")

def _as_rate(rate):
    return rate


@dataclass(frozen=True)
class NoiseKind:
    """One kind of noise source, declared once: the Keras classes that are it (most
    specific first across kinds; none for the kinds found inside other layers), the
    attribute holding its rate, the noise the twin draws for it (`mask`, AlphaDropout's
    affine `alpha` mask, a `multiply`-ing or an `add`-ed Gaussian: the twin's function of
    that name), the measure of what it dropped, that measure's nominal value from the
    rate, and whether the kind is a whole layer applying only noise."""

    name: str
    classes: tuple
    rate_attribute: str
    noise: str
    measure: str
    nominal: object = _as_rate
    noise_layer: bool = True


#: every kind, in the order a layer's classes are matched (AlphaDropout does not subclass
#: Dropout in Keras 3; SpatialDropout1D/2D/3D do)
KINDS = {kind.name: kind for kind in (
    NoiseKind("alpha_dropout", ("AlphaDropout",), "rate", "alpha", DROP_FRAC),
    NoiseKind("gaussian_dropout", ("GaussianDropout",), "rate", "multiply", NOISE_VAR,
              nominal=lambda rate: rate / (1.0 - rate)),
    NoiseKind("gaussian_noise", ("GaussianNoise",), "stddev", "add", NOISE_VAR,
              nominal=lambda stddev: stddev**2),
    NoiseKind("dropout", ("Dropout",), "rate", "mask", DROP_FRAC),
    # the Dropout a MultiHeadAttention applies to its attention weights
    NoiseKind("attention_dropout", (), "rate", "mask", DROP_FRAC),
    # an RNN cell's masks, one per sequence (Gal & Ghahramani 2016)
    NoiseKind("rnn_dropout", (), "dropout", "mask", DROP_FRAC, noise_layer=False),
    NoiseKind("rnn_recurrent_dropout", (), "recurrent_dropout", "mask", DROP_FRAC,
              noise_layer=False),
)}
#: the classes of BatchNormalization (`synchronized=True` is the second)
BATCHNORM_CLASSES = ("BatchNormalization", "SyncBatchNormalization")
_RNN = ("RNN",)
_ATTENTION = ("MultiHeadAttention",)


@dataclass(frozen=True)
class Source:
    """One noise source: `name` (the layer's path, `/dropout` or `/recurrent_dropout`
    after an RNN layer's), its `kind`, its `rate` and the `nominal` value of its drop
    measure (the rate for masks, the multiplier's or addend's variance for noise)."""

    name: str
    kind: str
    rate: float

    @property
    def drop_measure(self):
        """The measure of what it dropped (`drop_frac_measured` or `noise_var_measured`)."""
        return KINDS[self.kind].measure

    @property
    def noise(self):
        """The noise the twin draws for it (`NoiseKind.noise`)."""
        return KINDS[self.kind].noise

    @property
    def nominal(self):
        """The nominal value of its measure: the rate for masks, the multiplier's or the
        addend's variance for Gaussian noise."""
        return KINDS[self.kind].nominal(self.rate)


def class_names(layer):
    """The names of the classes `layer` is an instance of, most derived first."""
    return [cls.__name__ for cls in type(layer).__mro__]


def _rate(layer, attribute):
    try:
        return float(getattr(layer, attribute, 0.0) or 0.0)
    except (TypeError, ValueError):
        return 0.0


def noise_kind(layer, parent=None):
    """The kind of a Dropout-family layer ('dropout', 'attention_dropout' for the Dropout
    of a MultiHeadAttention, 'alpha_dropout', 'gaussian_dropout', 'gaussian_noise'), or
    None for any other layer."""
    names = class_names(layer)
    for kind in KINDS.values():
        if any(class_name in names for class_name in kind.classes):
            if kind.name == "dropout" and parent is not None and is_attention(parent):
                return "attention_dropout"
            return kind.name
    return None


def is_batchnorm(layer):
    return any(name in BATCHNORM_CLASSES for name in class_names(layer))


def is_rnn(layer):
    """An RNN layer (LSTM, GRU, SimpleRNN, RNN(cell)): its cell's masks are its noise."""
    return any(name in _RNN for name in class_names(layer)) and hasattr(layer, "cell")


def is_attention(layer):
    return any(name in _ATTENTION for name in class_names(layer))


def rnn_cells(cell):
    """The cells of an RNN layer's cell (a StackedRNNCells holds several)."""
    inner = getattr(cell, "cells", None)
    if inner:
        return [c for sub in inner for c in rnn_cells(sub)]
    return [cell]


def sources_of(layer, name, parent=None):
    """The noise sources a layer call brings, each with a nonzero rate: one for a
    Dropout-family layer (named `name`), one per rate of an RNN layer's cell
    (`name/dropout`, `name/recurrent_dropout`; a stacked cell's i-th cell adds `/cell_i`).
    A rate of 0 (a dead configuration) is no source."""
    kind = noise_kind(layer, parent)
    if kind is not None:
        rate = _rate(layer, KINDS[kind].rate_attribute)
        return [Source(name, kind, rate)] if rate > 0 else []
    if not is_rnn(layer):
        return []
    cells = rnn_cells(layer.cell)
    out = []
    for index, cell in enumerate(cells):
        stem = name if len(cells) == 1 else f"{name}/cell_{index}"
        for kind in ("rnn_dropout", "rnn_recurrent_dropout"):
            attribute = KINDS[kind].rate_attribute
            rate = _rate(cell, attribute)
            if 0.0 < rate < 1.0:
                out.append(Source(f"{stem}/{attribute}", kind, rate))
    return out


def regularizer_of(layer, parent=None):
    """What the layer table records of a layer: its noise kind, 'rnn_dropout' for an RNN
    with a nonzero rate, 'batchnorm', or None."""
    if is_batchnorm(layer):
        return "batchnorm"
    kind = noise_kind(layer, parent)
    if kind is not None:
        return kind
    if sources_of(layer, "", parent):
        return "rnn_dropout"
    return None


#: kinds that are whole layers applying only noise (placement rules look through them)
NOISE_LAYER_KINDS = frozenset(kind.name for kind in KINDS.values() if kind.noise_layer)
