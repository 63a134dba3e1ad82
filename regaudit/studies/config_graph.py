"""A Keras model config (a dict) as a graph of layer calls that can be edited: find a
layer's producers and consumers, insert a layer after another, remove one, keep every
inbound reference consistent. No TensorFlow import; `regaudit.studies.rewrite` makes a
study's variants with it."""

import copy
import json

from regaudit.errors import UsageError

#: A builder takes the factor levels as keyword arguments.
BUILDER_SIGNATURE = ("def build(dropout=0.5, bn='after', dropout_after_bn=False, spatial=False, "
                     "bn_momentum=0.99) -> keras.Model")


class NeedsBuilder(UsageError):
    """The model cannot be rewritten for these levels: give a builder `module:function`."""


def is_class(entry, classes):
    """Whether a config entry's class name is one of `classes`."""
    return entry.get("class_name") in classes


def layer_name(entry):
    """A config entry's layer name."""
    return entry.get("config", {}).get("name") or entry.get("name")


class Graph:
    """One Sequential or Functional config as a graph of single-input layer entries:
    `remove`, `insert_after`, `consumers`, `outputs` work on either kind."""

    def __init__(self, config, sequential):
        self.config, self.sequential = config, sequential
        self.layers = config["layers"]
        self._count = 0

    def names(self):
        return [layer_name(e) for e in self.layers]

    def entry(self, name):
        return next(e for e in self.layers if layer_name(e) == name)

    def index(self, name):
        return self.names().index(name)

    def input_of(self, name):
        """The layer feeding `name` (None for the first layer or several inputs)."""
        if self.sequential:
            at = self.index(name)
            return layer_name(self.layers[at - 1]) if at > 0 else None
        nodes = self.entry(name).get("inbound_nodes") or []
        found = _histories(nodes)
        return found[0][0] if len({h[0] for h in found}) == 1 and len(nodes) == 1 else None

    def consumers(self, name):
        if self.sequential:
            at = self.index(name)
            return [layer_name(self.layers[at + 1])] if at + 1 < len(self.layers) else []
        return [layer_name(e) for e in self.layers
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
                redirect(entry.get("inbound_nodes"), name, source)
            redirect(self.config.get("output_layers"), name, source)
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
                redirect(other.get("inbound_nodes"), name, [new, 0, 0])
            redirect(self.config.get("output_layers"), name, [new, 0, 0])
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


def plain(config):
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


def redirect(node, name, source):
    """Point every reference to layer `name`'s output in an inbound node at `source`."""
    for history in _histories(node):
        if history[0] == name and history[1:] == [0, 0]:
            history[:] = list(source)
