"""Run a Keras model through its own layer objects, seeing every layer call it makes.

`run_graph(model, inputs, on_output)` walks Functional and Sequential models node by node
(as `Functional.call` does, every layer with `training=False`) and runs every other
layer, and a subclassed model, through its own `call` with its sublayers' calls
intercepted (`keras_internals.intercepted_calls`). So the layers inside a custom layer,
a MultiHeadAttention, a nested model or a subclassed model are seen too, named by their
path: `transformer_block/dropout_1`, `outer/inner`; a layer called more than once is
`name`, `name:1`, ... `on_output(tap, outputs, args)` follows every layer call (`args`:
its positional inputs). An RNN layer is one call (its cell runs inside a loop).

It runs on real tensors inside a `tf.function` or a `jax.jit` trace, or eagerly on PyTorch: it
creates no Keras node and no Model, and leaves the model object as it was (the hook is
on the class, for the walk only). Tensors are told apart by identity, so every tensor
whose `id` is kept is kept alive too (eagerly, a freed tensor's id is soon reused).

`call_override(layer, name)` may return `f(proceed, *args, **kwargs)` to run instead of
the layer (`proceed` runs the layer as usual): the twin swaps in its own noise this way.
With a shared `cache` dict, a second walk in the same trace (the twin) reuses the first
walk's output of every layer whose inputs are the very same tensors and which has no
noise source inside (`noisy`): everything before the first noise source runs once.
"""

from dataclasses import dataclass

import keras

from regaudit.model.regularizers import is_rnn

from regaudit.callbacks.backends import backend
from regaudit.callbacks.backends import keras_internals as internals


@dataclass(frozen=True)
class Tap:
    """One layer call whose output is measured."""

    name: str
    layer: object
    parent: str
    #: the taps (or `input:<name>` model inputs) whose outputs this call consumed
    sources: tuple = ()
    #: the layer object that made this call (None at the top level)
    parent_layer: object = None

    @property
    def layer_class(self):
        return type(self.layer).__name__


def is_graph_model(model):
    """True for Functional and Sequential models, whose nodes the walk follows."""
    return isinstance(model, (internals.Functional, keras.Sequential))


def _opaque(layer):
    """Layers whose sublayer calls happen inside a loop (an RNN's cell): one call."""
    return is_rnn(layer) or type(layer).__name__ == "TimeDistributed"


class _Walk:
    def __init__(self, on_output, call_override, cache, noisy):
        self.on_output = on_output
        self.call_override = call_override
        self.cache = cache
        self.noisy = noisy
        self.calls = {}
        #: tensor identity -> the tap that produced it (sources inside custom layers)
        self.producers = {}
        #: the tensors whose ids `producers` holds, alive while the walk runs
        self.pinned = []
        #: (name prefix, layer) of the intercepted calls being run
        self.stack = []
        #: the traced function's graph: calls made in any other graph are not tapped
        self.graph = backend.current_graph()

    def unique(self, name):
        index = self.calls.get(name, 0)
        self.calls[name] = index + 1
        return name if index == 0 else f"{name}:{index}"

    def model(self, model, inputs, prefix, sources, parent=None):
        """Returns (outputs, the tap that produced each flattened output)."""
        if isinstance(model, keras.Sequential):
            if model._functional is not None:
                return self.functional(model._functional, inputs, prefix, sources, parent)
            outputs = inputs
            for layer in model.layers:
                outputs, sources = self.layer(layer, (outputs,), {}, prefix, sources, parent)
            return outputs, sources
        return self.functional(model, inputs, prefix, sources, parent)

    def functional(self, model, inputs, prefix, sources, parent):
        inputs = keras.tree.flatten(model._standardize_inputs(inputs))
        if sources is None:
            sources = [f"input:{ref.name}" for ref in model.inputs]
        else:
            # called inside a custom layer on the output of a raw op (`ops.transpose`):
            # no tap produced that input, so it has no source
            sources = (list(sources) + [None] * len(model.inputs))[:len(model.inputs)]
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
                outputs, made = self.layer(node.operation, args, kwargs, prefix, consumed, parent)
                for ref, value, source in zip(node.outputs, keras.tree.flatten(outputs), made):
                    tensors[id(ref)], producers[id(ref)] = value, source
        outputs = [tensors[id(ref)] for ref in model.outputs]
        made = [producers[id(ref)] for ref in model.outputs]
        return keras.tree.pack_sequence_as(model._outputs_struct, outputs), made

    def layer(self, layer, args, kwargs, prefix, sources, parent=None):
        name = self.unique(prefix + layer.name)
        if is_graph_model(layer):
            return self.model(layer, args[0], name + "/", sources, parent)
        outputs = self.call(layer, args, kwargs, name, name + "/")
        tap = Tap(name=name, layer=layer, parent=prefix.rstrip("/"),
                  sources=tuple(source for source in sources or () if source is not None),
                  parent_layer=parent)
        self.on_output(tap, outputs, args)
        flat = keras.tree.flatten(outputs)
        self.pinned.extend(flat)
        for tensor in flat:
            self.producers[id(tensor)] = name
        return outputs, [name] * len(flat)

    def call(self, layer, args, kwargs, name, child_prefix):
        """The layer's output: its override, the cached output of the first walk, or
        the layer itself run with its sublayer calls intercepted, in inference mode."""
        kwargs = dict(kwargs)
        if getattr(layer, "_call_has_training_arg", False):
            kwargs["training"] = False
        override = self.call_override(layer, name) if self.call_override else None
        reusable = override is None and self.cache is not None and not self.noisy(layer)
        key = (id(layer),) + tuple(id(t) for t in keras.tree.flatten((args, kwargs)))
        if reusable and key in self.cache:
            return self.cache[key][0]

        def proceed(*call_args, **call_kwargs):
            self.stack.append((child_prefix, layer))
            try:
                if _opaque(layer):
                    with internals.suspended_hook(), internals.no_rnn_masks():
                        return internals.original_call(layer, *call_args, **call_kwargs)
                return internals.original_call(layer, *call_args, **call_kwargs)
            finally:
                self.stack.pop()

        outputs = override(proceed, *args, **kwargs) if override else proceed(*args, **kwargs)
        if reusable:  # the key's tensors stay alive with the entry
            self.cache[key] = (outputs, (args, kwargs))
        return outputs

    def intercept(self, layer, args, kwargs):
        """A sublayer call made inside a layer the walk is running."""
        if backend.current_graph() is not self.graph:
            return internals.original_call(layer, *args, **kwargs)
        prefix, parent = self.stack[-1] if self.stack else ("", None)
        # one entry per flattened input, None where no tap made it (a raw op's output)
        sources = [self.producers.get(id(t)) for t in keras.tree.flatten(args)]
        return self.layer(layer, args, kwargs, prefix, sources, parent)[0]


def run_graph(model, inputs, on_output, call_override=None, cache=None, noisy=None):
    """Run `model` on `inputs` in inference mode, calling `on_output(tap, outputs, args)`
    after every layer call, nested ones included. A subclassed model's sublayers are named
    without the model's name; its output is one more tap named after the model."""
    walk = _Walk(on_output, call_override, cache, noisy or (lambda layer: False))
    with internals.intercepted_calls(walk.intercept):
        if is_graph_model(model):
            return walk.model(model, inputs, "", None)[0]
        outputs = walk.call(model, (inputs,), {}, model.name, "")
    on_output(Tap(name=model.name, layer=model, parent="", sources=("input",)), outputs, (inputs,))
    return outputs
