"""Run a Keras model layer by layer through its own layer objects, seeing every output.

`run_graph(model, inputs, on_output)` does what `Functional.call` does (walks the nodes
by depth, calls each layer with `training=False`), but calls `on_output(tap, outputs,
args)` after every layer call (`args`: the positional inputs of that call), with nested Functional and Sequential models flattened into
`outer/inner` names. It runs on real tensors inside a `tf.function`, so it creates no
new Keras nodes and no new Model, and it changes nothing in the model. A layer called
more than once (a shared layer) is named `name`, `name:1`, `name:2`, ...

`call_override(layer)` may return a replacement callable for a layer (the twin models
swap in always-on Dropout this way); None keeps the layer. With a shared `cache` dict,
a second walk in the same trace (the twin) reuses the first walk's output of every layer
whose inputs are the very same tensors: everything before the first Dropout is computed
once.
"""

from dataclasses import dataclass

import keras
from keras.src.models.functional import Functional


@dataclass(frozen=True)
class Tap:
    """One layer call whose output is measured."""

    name: str
    layer: object
    parent: str
    #: the taps (or `input:<name>` model inputs) whose outputs this call consumed
    sources: tuple = ()

    @property
    def layer_class(self):
        return type(self.layer).__name__


def is_graph_model(model):
    """True for Functional and Sequential models, whose layers can be tapped."""
    return isinstance(model, (Functional, keras.Sequential))


class _Walk:
    def __init__(self, on_output, call_override, cache):
        self.on_output = on_output
        self.call_override = call_override
        self.cache = cache
        self.calls = {}

    def unique(self, name):
        index = self.calls.get(name, 0)
        self.calls[name] = index + 1
        return name if index == 0 else f"{name}:{index}"

    def model(self, model, inputs, prefix, sources):
        """Returns (outputs, the tap that produced each flattened output)."""
        if isinstance(model, keras.Sequential):
            if model._functional is not None:
                return self.functional(model._functional, inputs, prefix, sources)
            outputs = inputs
            for layer in model.layers:
                outputs, sources = self.layer(layer, (outputs,), {}, prefix, sources)
            return outputs, sources
        return self.functional(model, inputs, prefix, sources)

    def functional(self, model, inputs, prefix, sources):
        inputs = keras.tree.flatten(model._standardize_inputs(inputs))
        if sources is None:
            sources = [f"input:{ref.name}" for ref in model.inputs]
        tensors, producers = {}, {}
        for ref, value, source in zip(model.inputs, inputs, sources):
            tensors[id(ref)], producers[id(ref)] = value, source
        for depth in sorted(model._nodes_by_depth, reverse=True):
            for node in model._nodes_by_depth[depth]:
                if not node.operation or node.is_input:
                    continue
                if any(id(ref) not in tensors for ref in node.input_tensors):
                    continue
                args, kwargs = node.arguments.fill_in(tensors)
                consumed = [producers[id(ref)] for ref in node.input_tensors]
                outputs, made = self.layer(node.operation, args, kwargs, prefix, consumed)
                for ref, value, source in zip(node.outputs, keras.tree.flatten(outputs), made):
                    tensors[id(ref)], producers[id(ref)] = value, source
        outputs = [tensors[id(ref)] for ref in model.outputs]
        made = [producers[id(ref)] for ref in model.outputs]
        return keras.tree.pack_sequence_as(model._outputs_struct, outputs), made

    def layer(self, layer, args, kwargs, prefix, sources):
        name = self.unique(prefix + layer.name)
        if is_graph_model(layer):
            return self.model(layer, args[0], name + "/", sources)
        kwargs = dict(kwargs)
        if getattr(layer, "_call_has_training_arg", False):
            kwargs["training"] = False
        override = self.call_override(layer) if self.call_override else None
        key = (id(layer),) + tuple(id(t) for t in keras.tree.flatten((args, kwargs)))
        if override is None and self.cache is not None and key in self.cache:
            outputs = self.cache[key]
        else:
            outputs = (override or layer)(*args, **kwargs)
            if override is None and self.cache is not None:
                self.cache[key] = outputs
        tap = Tap(name=name, layer=layer, parent=prefix.rstrip("/"), sources=tuple(sources or ()))
        self.on_output(tap, outputs, args)
        return outputs, [name] * len(keras.tree.flatten(outputs))


def run_graph(model, inputs, on_output, call_override=None, cache=None):
    """Run `model` on `inputs` in inference mode, calling `on_output(tap, outputs, args)`
    after every layer call. Subclassed models run whole and report one tap named after the model.
    """
    walk = _Walk(on_output, call_override, cache)
    if is_graph_model(model):
        return walk.model(model, inputs, "", None)[0]
    outputs = model(inputs, training=False)
    on_output(Tap(name=model.name, layer=model, parent="", sources=("input",)), outputs, (inputs,))
    return outputs
