"""Variants of a Keras model, rewritten on its config (a dict: no TensorFlow import).

A study's variant is the user's model with its regularizers set to the variant's levels,
rebuilt from the rewritten config (`keras.Model.from_config`) so it trains from fresh
weights with the original compile settings. Sequential and Functional configs are
rewritten, nested ones too (each nested model is rewritten on its own). Regularizers are
recognised by class name through `regaudit.regularizers` (a subclass of Dropout is a
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

The learning-rate factor is a compile setting (`regaudit.callbacks.study_trial`).
"""

import copy
import json

from regaudit.errors import RegauditError, UsageError

DROPOUT_CLASSES = ("Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D")
BATCHNORM_CLASSES = ("BatchNormalization",)
UNIT_CLASSES = ("Dense", "EinsumDense", "Conv1D", "Conv2D", "Conv3D", "SeparableConv1D",
                "SeparableConv2D", "DepthwiseConv1D", "DepthwiseConv2D", "Conv1DTranspose",
                "Conv2DTranspose", "Conv3DTranspose")
ACTIVATION_CLASSES = ("Activation", "ReLU", "LeakyReLU", "ELU", "PReLU", "Softmax")
MODEL_CLASSES = ("Sequential", "Functional", "Model")
BN_LEVELS = ("none", "after", "before")
#: A builder takes the factor levels as keyword arguments.
BUILDER_SIGNATURE = ("def build(dropout=0.5, bn='after', dropout_after_bn=False, spatial=False, "
                     "bn_momentum=0.99) -> keras.Model")
_LINEAR = (None, "linear")


class NeedsBuilder(UsageError):
    """The model cannot be rewritten for these levels: give a builder `module:function`."""


def _is(entry, classes):
    return entry.get("class_name") in classes


def _name(entry):
    return entry.get("config", {}).get("name") or entry.get("name")


class Graph:
    """One Sequential or Functional config as a graph of single-input layer entries:
    `remove`, `insert_after`, `consumers`, `outputs` work on either kind."""

    def __init__(self, config, sequential):
        self.config, self.sequential = config, sequential
        self.layers = config["layers"]
        self._count = 0

    def names(self):
        return [_name(e) for e in self.layers]

    def entry(self, name):
        return next(e for e in self.layers if _name(e) == name)

    def index(self, name):
        return self.names().index(name)

    def input_of(self, name):
        """The layer feeding `name` (None for the first layer or several inputs)."""
        if self.sequential:
            at = self.index(name)
            return _name(self.layers[at - 1]) if at > 0 else None
        nodes = self.entry(name).get("inbound_nodes") or []
        found = _histories(nodes)
        return found[0][0] if len({h[0] for h in found}) == 1 and len(nodes) == 1 else None

    def consumers(self, name):
        if self.sequential:
            at = self.index(name)
            return [_name(self.layers[at + 1])] if at + 1 < len(self.layers) else []
        return [_name(e) for e in self.layers
                if any(h[0] == name for h in _histories(e.get("inbound_nodes") or []))]

    def is_output(self, name):
        if self.sequential:
            return self.index(name) == len(self.layers) - 1
        return any(h[0] == name for h in _histories(self.config.get("output_layers")))

    def calls(self, name):
        return 1 if self.sequential else len(self.entry(name).get("inbound_nodes") or [])

    def _single(self, name, why):
        if self.calls(name) > 1:
            raise NeedsBuilder(f"layer '{name}' is called {self.calls(name)} times; a variant "
                               f"{why} needs a builder `module:function` ({BUILDER_SIGNATURE})")

    def remove(self, name):
        """Take out a single-input layer, its consumers reading its input instead."""
        self._single(name, "without it")
        at = self.index(name)
        if not self.sequential:
            source = _histories(self.layers[at].get("inbound_nodes"))[0]
            for entry in self.layers:
                _redirect(entry.get("inbound_nodes"), name, source)
            _redirect(self.config.get("output_layers"), name, source)
        del self.layers[at]

    def insert_after(self, name, entry):
        """Put a new single-input layer `entry` right after `name`; returns its name."""
        self._single(name, "with a layer after it")
        new = self._unique(entry["class_name"])
        entry = copy.deepcopy(entry)
        entry["config"]["name"] = new
        entry.pop("build_config", None)
        at = self.index(name)
        if not self.sequential:
            described = [t for other in self.layers for t in _tensors(other.get("inbound_nodes"))
                         if t["config"]["keras_history"][0] == name]
            if not described:
                raise NeedsBuilder(f"nothing reads layer '{name}' as a described tensor; a variant "
                                   f"with a layer after it needs a builder ({BUILDER_SIGNATURE})")
            entry["name"] = new
            for other in self.layers:
                _redirect(other.get("inbound_nodes"), name, [new, 0, 0])
            _redirect(self.config.get("output_layers"), name, [new, 0, 0])
            tensor = copy.deepcopy(described[0])
            tensor["config"]["keras_history"] = [name, 0, 0]
            entry["inbound_nodes"] = [{"args": [tensor], "kwargs": {}}]
        self.layers.insert(at + 1, entry)
        return new

    def _unique(self, class_name):
        taken = set(self.names())
        base = "regaudit_" + "".join("_" + c.lower() if c.isupper() else c for c in class_name).lstrip("_")
        while True:
            self._count += 1
            name = f"{base}_{self._count}"
            if name not in taken:
                return name


def _plain(config):
    """A deep copy with every tuple a list (an in-memory config holds tuples)."""
    try:
        return json.loads(json.dumps(config))
    except (TypeError, ValueError):
        return copy.deepcopy(config)


def _tensors(node):
    """Every serialized KerasTensor (shape, dtype, keras_history) inside a config fragment."""
    if isinstance(node, dict):
        if node.get("class_name") == "__keras_tensor__":
            return [node]
        return [t for value in node.values() for t in _tensors(value)]
    if isinstance(node, (list, tuple)):
        return [t for value in node for t in _tensors(value)]
    return []


def _histories(node):
    """Every keras_history [layer, node, tensor] inside a config fragment."""
    found = []
    if isinstance(node, dict):
        if "keras_history" in node:
            found.append(node["keras_history"])
        for value in node.values():
            found += _histories(value)
    elif isinstance(node, (list, tuple)):
        if len(node) == 3 and isinstance(node[0], str) and all(isinstance(i, int) for i in node[1:]):
            found.append(node)  # output_layers / input_layers entries
        else:
            for value in node:
                found += _histories(value)
    return found


def _redirect(node, name, source):
    for history in _histories(node):
        if history[0] == name and history[1:] == [0, 0]:
            history[:] = list(source)


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
        if _is(entry, MODEL_CLASSES):
            out += graphs(entry, final and _reaches_output(graph, _name(entry), None))
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
    name = _name(entry)
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
    config = _plain(config)
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
