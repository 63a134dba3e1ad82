"""Variants of a Keras model, rewritten on its config (a dict: no TensorFlow import).

A study's variant is the user's model with its regularizers set to the variant's levels,
rebuilt from the rewritten config (`keras.Model.from_config`) so it trains from fresh
weights with the original compile settings. Sequential and Functional configs are
rewritten, nested ones too (each nested model is rewritten on its own). Regularizers are
recognised by class name through `regaudit.model.regularizers` (a subclass of Dropout is a
Dropout). A layer this cannot rewrite safely (a custom layer holding BN or Dropout, a
layer shared by several calls that would need a layer inserted after it) raises
`NeedsBuilder`, which names the layer and the builder's signature.

Levels (`apply(config, levels)` with any subset of):

- `dropout` (rate): every Dropout-family layer, MultiHeadAttention's `dropout`, an RNN's
  `dropout` and `recurrent_dropout` set to the rate; 0 removes the Dropout layers; a
  rate on a model with no noise source inserts one Dropout before the output layer.
- `bn`: `none` removes every BatchNormalization; `after` puts one after the activation of
  each Conv/Dense but the output layer (`Conv2D(activation="relu")`, then BN, as the
  seed article does); `before` splits the activation out (`activation=None`, BN,
  `Activation`). Existing BN layers give the template (momentum, epsilon).
- `dropout_after_bn` (bool): Li et al.'s remedy, every Dropout upstream of a BN removed
  and one Dropout (the largest of their rates) put before the output layer instead.
- `spatial` (bool): element-wise Dropout on conv feature maps becomes SpatialDropout1D/2D/3D.
- `bn_momentum`: every BN's momentum.

The learning-rate factor is a compile setting (`regaudit.callbacks.study.trial`).
"""

import copy

from regaudit.errors import RegauditError
from regaudit.model.layer_graph import ACTIVATION_LAYERS
from regaudit.studies.config_graph import (  # noqa: F401 - NeedsBuilder, BUILDER_SIGNATURE: the study's
    BUILDER_SIGNATURE, Graph, NeedsBuilder, is_class, layer_name, plain,
)

DROPOUT_CLASSES = ("Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D")
BATCHNORM_CLASSES = ("BatchNormalization",)
UNIT_CLASSES = ("Dense", "EinsumDense", "Conv1D", "Conv2D", "Conv3D", "SeparableConv1D",
                "SeparableConv2D", "DepthwiseConv1D", "DepthwiseConv2D", "Conv1DTranspose",
                "Conv2DTranspose", "Conv3DTranspose")
ACTIVATION_CLASSES = tuple(sorted(ACTIVATION_LAYERS))
MODEL_CLASSES = ("Sequential", "Functional", "Model")
BN_LEVELS = ("none", "after", "before")
_LINEAR = (None, "linear")


def graphs(config, final=True):
    """[Graph] for a model config and every nested model config inside it; a graph is
    `final` when its outputs are the whole model's (its output layer is the model's)."""
    inner = config.get("config", config)
    if "layers" not in inner:
        return []
    graph = Graph(inner, config.get("class_name") == "Sequential" or "inbound_nodes" not in
                  (inner["layers"][0] if inner["layers"] else {}))
    graph.final = final
    out = [graph]
    for entry in inner["layers"]:
        if is_class(entry, MODEL_CLASSES):
            out += graphs(entry, final and _reaches_output(graph, layer_name(entry), None))
    return out


# -- roles: what each layer of the config is, from the live layers when known ------------

def role_of_class(class_name):
    """A layer's role by class name alone (configs read without Keras): 'dropout',
    'batchnorm', 'unit', 'activation', 'attention', 'rnn', 'model' or None."""
    for role, classes in (("dropout", DROPOUT_CLASSES), ("batchnorm", BATCHNORM_CLASSES),
                          ("unit", UNIT_CLASSES), ("activation", ACTIVATION_CLASSES),
                          ("model", MODEL_CLASSES)):
        if class_name in classes:
            return role
    if class_name == "MultiHeadAttention":
        return "attention"
    if class_name in ("LSTM", "GRU", "SimpleRNN", "Bidirectional", "RNN"):
        return "rnn"
    return None


def _role(entry, roles):
    name = layer_name(entry)
    if roles is not None and name in roles:
        return roles[name]
    return role_of_class(entry.get("class_name"))


# -- the levels -------------------------------------------------------------------------

def _activation_of(graph, name, roles):
    """(activation, where) of a unit: ('relu', unit) when fused, ('relu', the Activation
    layer) when a lone Activation layer reads the unit, (None, None) without one."""
    config = graph.entry(name)["config"]
    if config.get("activation") not in _LINEAR:
        return config["activation"], name
    after = graph.consumers(name)
    if len(after) == 1 and _role(graph.entry(after[0]), roles) == "activation":
        return graph.entry(after[0])["config"].get("activation", after[0]), after[0]
    return None, None


def _reaches_output(graph, name, roles):
    """Whether `name`'s output reaches a model output through no unit, model, attention
    or RNN layer."""
    seen, todo = set(), [name]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        if graph.is_output(current):
            return True
        todo += [c for c in graph.consumers(current)
                 if _role(graph.entry(c), roles) not in ("unit", "model", "attention", "rnn")]
    return False


def _output_units(graph, roles):
    """Units whose output reaches the model's output through no other unit (the output
    layer); none in a nested model whose output is not the model's."""
    if not getattr(graph, "final", True):
        return set()
    return {name for name in graph.names()
            if _role(graph.entry(name), roles) == "unit" and _reaches_output(graph, name, roles)}


def _default_batchnorm():
    return {"module": "keras.layers", "class_name": "BatchNormalization", "registered_name": None,
            "config": {"name": "batch_normalization", "axis": -1, "momentum": 0.99,
                       "epsilon": 0.001, "center": True, "scale": True}}


def _set_batchnorm(graph, level, roles, template, notes):
    for name in [n for n in graph.names() if _role(graph.entry(n), roles) == "batchnorm"]:
        graph.remove(name)
    if level == "none":
        return
    last = _output_units(graph, roles)
    for unit in [n for n in graph.names() if _role(graph.entry(n), roles) == "unit" and n not in last]:
        activation, where = _activation_of(graph, unit, roles)
        if activation is None:
            graph.insert_after(unit, template)
            notes.append(f"BatchNormalization after '{unit}', which has no activation")
        elif level == "after":
            graph.insert_after(where, template)
        elif where == unit:  # before: split the fused activation out
            graph.entry(unit)["config"]["activation"] = "linear"
            bn = graph.insert_after(unit, template)
            graph.insert_after(bn, {"module": "keras.layers", "class_name": "Activation",
                                    "registered_name": None,
                                    "config": {"name": "activation", "activation": activation}})
        else:
            graph.insert_after(unit, template)


def _dropout_entry(rate):
    return {"module": "keras.layers", "class_name": "Dropout", "registered_name": None,
            "config": {"name": "dropout", "rate": float(rate), "seed": None, "noise_shape": None}}


def _before_output(graph, roles, entry, notes, why):
    """Insert `entry` right before the output unit (after the layer feeding it)."""
    outputs = [n for n in graph.names() if n in _output_units(graph, roles)]
    if len(outputs) != 1 or graph.input_of(outputs[0]) is None:
        raise NeedsBuilder(f"no single output layer to put Dropout before ({why}); a variant "
                           f"with it needs a builder `module:function` ({BUILDER_SIGNATURE})")
    new = graph.insert_after(graph.input_of(outputs[0]), entry)
    notes.append(f"Dropout '{new}' inserted before the output layer '{outputs[0]}' ({why})")


def _set_rate(graph, rate, roles, notes):
    found = False
    for name in list(graph.names()):
        entry = graph.entry(name)
        role = _role(entry, roles)
        config = entry["config"]
        if role == "dropout":
            found = True
            if rate == 0:
                graph.remove(name)
            else:
                config["rate"] = float(rate)
        elif role == "attention" and float(config.get("dropout") or 0) > 0:
            found = True
            config["dropout"] = float(rate)
        elif role == "rnn":
            inner = config.get("layer", {}).get("config", config)  # Bidirectional wraps one
            for key in ("dropout", "recurrent_dropout"):
                if float(inner.get(key) or 0) > 0:
                    found = True
                    inner[key] = float(rate)
            backward = config.get("backward_layer")
            for key in ("dropout", "recurrent_dropout"):
                if backward and float(backward["config"].get(key) or 0) > 0:
                    backward["config"][key] = float(rate)
    return found


def _dropout_after_bn(graph, roles, notes):
    """Li et al.: every Dropout upstream of a BN moves to before the output layer."""
    names = graph.names()
    norms = [i for i, n in enumerate(names) if _role(graph.entry(n), roles) == "batchnorm"]
    if not norms:
        return
    moved = [n for n in names[:norms[-1]] if _role(graph.entry(n), roles) == "dropout"]
    if not moved:
        return
    rate = max(float(graph.entry(n)["config"].get("rate", 0.5)) for n in moved)
    for name in moved:
        graph.remove(name)
    outputs = [n for n in graph.names() if n in _output_units(graph, roles)]
    before = graph.input_of(outputs[0]) if len(outputs) == 1 else None
    if before is not None and _role(graph.entry(before), roles) == "dropout":
        config = graph.entry(before)["config"]
        config["rate"] = max(rate, float(config["rate"]))
        notes.append(f"Dropout {', '.join(moved)} removed; '{before}', after the last "
                     f"BatchNormalization, drops at rate {config['rate']:g}")
    else:
        _before_output(graph, roles, _dropout_entry(rate), notes, f"in place of {', '.join(moved)}")


def _spatial(graph, roles, ranks, notes):
    """Element-wise Dropout on feature maps (input rank 3-5, from `ranks` {name: rank})
    becomes SpatialDropout1D/2D/3D."""
    for name in graph.names():
        entry = graph.entry(name)
        rank = (ranks or {}).get(name)
        if entry.get("class_name") != "Dropout" or _role(entry, roles) != "dropout" or rank is None:
            continue
        if 3 <= rank <= 5:
            entry["class_name"] = f"SpatialDropout{rank - 2}D"
            entry["config"] = {key: entry["config"][key] for key in ("name", "rate", "seed", "dtype")
                               if key in entry["config"]}
            notes.append(f"'{name}' drops whole channels (SpatialDropout{rank - 2}D)")


FACTORS = ("dropout", "bn", "dropout_after_bn", "spatial", "bn_momentum")


def apply(config, levels, roles=None, ranks=None):
    """(a new model config with `levels` applied, [notes: what was inserted where]).
    `config` is `keras.saving.serialize_keras_object(model)` or `model.get_config()`;
    `roles` {layer name: role} from the live model (else by class name); `ranks`
    {Dropout layer name: rank of its input} for `spatial`."""
    unknown = sorted(set(levels) - set(FACTORS) - {"lr"})
    touched = {"dropout", "bn", "dropout_after_bn", "spatial", "bn_momentum"} & set(levels)
    custom = sorted(n for n, r in (roles or {}).items() if r == "custom")
    if custom and touched:
        raise NeedsBuilder(f"layer '{custom[0]}' holds Dropout or BatchNormalization inside its own "
                           f"code, which a config cannot rewrite; give a builder `module:function` "
                           f"({BUILDER_SIGNATURE})")
    if unknown:
        raise RegauditError(f"unknown factor {', '.join(map(repr, unknown))}; expected one of "
                            f"{', '.join(FACTORS + ('lr',))}")
    config = plain(config)
    notes = []
    every = graphs(config)
    if not every:
        raise NeedsBuilder(f"the model config has no layers to rewrite (a subclassed model); a "
                           f"variant needs a builder `module:function` ({BUILDER_SIGNATURE})")
    templates = [g.entry(n) for g in every for n in g.names() if _role(g.entry(n), roles) == "batchnorm"]
    template = copy.deepcopy(templates[0]) if templates else _default_batchnorm()
    if levels.get("bn_momentum") is not None:
        template["config"]["momentum"] = float(levels["bn_momentum"])
    for graph in every:
        if levels.get("bn") is not None:
            if levels["bn"] not in BN_LEVELS:
                raise RegauditError(f"bn level {levels['bn']!r}; expected one of {', '.join(BN_LEVELS)}")
            _set_batchnorm(graph, levels["bn"], roles, template, notes)
        if levels.get("bn_momentum") is not None:
            for name in graph.names():
                if _role(graph.entry(name), roles) == "batchnorm":
                    graph.entry(name)["config"]["momentum"] = float(levels["bn_momentum"])
    if levels.get("dropout") is not None:
        rate = float(levels["dropout"])
        if not 0 <= rate < 1:
            raise RegauditError(f"dropout rate {rate}; expected a rate in [0, 1)")
        found = [_set_rate(g, rate, roles, notes) for g in every]
        if rate > 0 and not any(found):
            _before_output(every[0], roles, _dropout_entry(rate), notes, "the model has no Dropout")
    if levels.get("dropout_after_bn"):
        for graph in every:
            _dropout_after_bn(graph, roles, notes)
    if levels.get("spatial"):
        for graph in every:
            _spatial(graph, roles, ranks, notes)
    return config, notes
