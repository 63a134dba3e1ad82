"""`regaudit.lint(model)`: the layer rows of a Keras model, without data and without
training, for the rules of `regaudit.lint`.

A Functional or Sequential model made of plain layers is read from its graph's nodes
(no trace: ResNet50 lints in well under a second). A model with a custom layer that holds
a Dropout-family layer or a BatchNormalization, or a subclassed model, is traced once
symbolically (`tf.function.get_concrete_function` on input specs: nothing runs) through
`graph.run_graph`, which sees every sublayer call and what it consumed. A model whose
input shape is unknown (a subclassed model never built) keeps its layers without
connections: the rules that need connections skip them.
"""

import warnings

import keras
import numpy as np

from regaudit.errors import RegauditWarning, UsageError
from regaudit.model.lint_rules import RULE_IDS, counts, lint_rows
from regaudit.model.regularizers import is_attention, is_batchnorm, is_rnn, regularizer_of, sources_of

from regaudit.callbacks.backends import backend
from regaudit.callbacks.backends import keras_internals as internals
from regaudit.callbacks.probe.graph import is_graph_model, run_graph
from regaudit.callbacks.probe.stochastic import kept_seed_state
from regaudit.callbacks.probe.taps import activation_name


def layer_facts(layer):
    """The configuration the rules read beyond `model.json`'s: bias, centring, noise shape."""
    noise_shape = getattr(layer, "noise_shape", None)
    return {"use_bias": getattr(layer, "use_bias", None), "center": getattr(layer, "center", None),
            "noise_shape": None if noise_shape is None else list(noise_shape)}


def layer_row(name, layer, parent_name, parent, sources, shape, regularizer=None, noise=None):
    """The one row of a layer call that the lint rules, the tags and `model.json` read:
    its path, class, parent, sources (None: unknown), per-sample shape, activation, rate,
    BN momentum, regularizer and noise sources (`regaudit.model.regularizers`, read from the
    layer in its `parent` unless given) and `layer_facts`."""
    regularizer = regularizer_of(layer, parent) if regularizer is None and noise is None else regularizer
    noise = sources_of(layer, name, parent) if noise is None else noise
    return {"name": name, "layer_class": type(layer).__name__, "parent": parent_name,
            "sources": None if sources is None else list(sources),
            "shape": None if shape is None else list(shape), "activation": activation_name(layer),
            "rate": getattr(layer, "rate", None),
            "momentum": getattr(layer, "momentum", None) if is_batchnorm(layer) else None,
            "regularizer": regularizer,
            "noise_sources": [{"name": s.name, "kind": s.kind, "rate": s.rate}
                              for s in noise]} | layer_facts(layer)


def _needs_trace(model):
    """Whether connections inside some layer matter: a subclassed model, or a custom
    layer (not an RNN or attention layer, whose noise `sources_of` already reads) holding
    a Dropout-family layer or a BatchNormalization."""
    if not is_graph_model(model):
        return True
    for _, layer, parent in internals.layer_tree(model):
        if parent is None or is_graph_model(parent) or is_rnn(parent) or is_attention(parent):
            continue
        if regularizer_of(layer, parent) is not None:
            return True
    return False


def _static_rows(model):
    """Rows of a graph model from its nodes (sources known), nested models included."""
    rows, counts = [], {}

    def walk(graph, prefix, input_sources, parent):
        functional = graph._functional if isinstance(graph, keras.Sequential) else graph
        if functional is None:  # a Sequential never built: its layers, unconnected
            for layer in graph.layers:
                rows.append(layer_row(prefix + layer.name, layer, prefix.rstrip("/"), parent, None, None))
            return []
        producers = {id(ref): source for ref, source in zip(functional.inputs, input_sources)}
        for depth in sorted(functional._nodes_by_depth, reverse=True):
            for node in functional._nodes_by_depth[depth]:
                layer = node.operation
                if not layer or node.is_input:
                    continue
                consumed = [producers.get(id(ref)) for ref in node.input_tensors]
                base = prefix + getattr(layer, "name", type(layer).__name__)
                index = counts.get(base, 0)
                counts[base] = index + 1
                name = base if index == 0 else f"{base}:{index}"
                if is_graph_model(layer):
                    made = walk(layer, name + "/", consumed, layer)
                    for ref, source in zip(node.outputs, made):
                        producers[id(ref)] = source
                    continue
                shape = node.outputs[0].shape[1:] if node.outputs else None
                rows.append(layer_row(name, layer, prefix.rstrip("/"), parent,
                                 [c for c in consumed if c is not None], shape))
                for _, child, child_parent in internals.layer_tree(layer):  # MHA, RNN cells
                    rows.append(layer_row(f"{name}/{child.name}", child, name, child_parent, None, None))
                for ref in node.outputs:
                    producers[id(ref)] = name
        return [producers.get(id(ref)) for ref in functional.outputs]

    outputs = walk(model, "", [f"input:{ref.name}" for ref in getattr(model, "inputs", [])], None)
    return rows, {o for o in outputs if o}


def _input_specs(model):
    """(shape, dtype) of the model's inputs (batch dimension free), or None when unknown."""
    if is_graph_model(model) and getattr(model, "inputs", None):
        specs = [((None, *ref.shape[1:]), ref.dtype) for ref in model.inputs]
        return specs if len(specs) > 1 else specs[0]
    shapes = getattr(model, "_build_shapes_dict", None) or {}
    if len(shapes) == 1:
        (shape,) = shapes.values()
        if isinstance(shape, (tuple, list)) and all(isinstance(d, (int, type(None))) for d in shape):
            return (None, *shape[1:]), "float32"
    return None


def _run_once(model, specs, run):
    """`run(inputs)` once: on TensorFlow a symbolic trace (`get_concrete_function` on
    input specs: nothing is computed); on JAX and PyTorch, one eager call in inference
    on a row of zeros (a free axis of length 2), the model's seed state kept."""
    if backend.trace(run, specs):  # TensorFlow: traced symbolically, nothing computed
        return
    is_spec = lambda s: isinstance(s, tuple) and len(s) == 2 and isinstance(s[0], tuple)  # noqa: E731
    zeros = lambda s: np.zeros([1] + [2 if d is None else d for d in s[0][1:]], s[1])  # noqa: E731
    inputs = [zeros(s) for s in specs] if not is_spec(specs) else zeros(specs)
    with kept_seed_state(model), backend.inference():
        run(inputs)


def _traced_rows(model, specs):
    """Rows from one run of `run_graph` (`_run_once`)."""
    rows, outputs = [], set()

    def on_output(tap, values, args):
        flat = keras.tree.flatten(values)
        shape = flat[0].shape[1:] if flat and getattr(flat[0], "shape", None) is not None else None
        rows.append(layer_row(tap.name, tap.layer, tap.parent, tap.parent_layer, tap.sources, shape))

    _run_once(model, specs, lambda inputs: run_graph(model, inputs, on_output))
    top = [row for row in rows if row["name"] != model.name]
    consumed = {source for row in top for source in row["sources"] or ()}
    # the top-level calls nothing else consumed make the output (a subclassed model's own
    # row, named after the model, is left out: it is the model, not one of its layers)
    outputs = {row["name"] for row in top if row["parent"] == "" and row["name"] not in consumed}
    return top, outputs


def model_rows(model):
    """The layer rows of `model` for the lint rules, with `is_output` marked."""
    specs = _input_specs(model) if _needs_trace(model) else None
    if specs is not None:
        rows, outputs = _traced_rows(model, specs)
    elif is_graph_model(model):
        rows, outputs = _static_rows(model)
    else:  # the input shape is unknown: layers without connections
        rows = [layer_row(name, layer, name.rpartition("/")[0], parent, None, None)
                for name, layer, parent in internals.layer_tree(model)]
        outputs = set()
    for row in rows:
        row["is_output"] = row["name"] in outputs
    return rows


def lint(model, steps=None, batch_size=None, ignore=()):
    """Lint findings (`regaudit.model.lint_rules.LintFinding`) of a Keras model before training:
    Dropout feeding BatchNormalization, BN placement, dead or extreme rates, Dropout after
    the output, a bias before BN, small BN batches (`batch_size=`), element-wise Dropout
    on feature maps, a BN momentum too high for `steps=` planned training steps. `ignore`:
    rule ids to switch off (`{"RA102"}`)."""
    if not isinstance(model, keras.Model):
        raise UsageError(f"regaudit.lint: received {type(model).__name__}, expected a keras.Model; "
                         "pass the model object (or use `regaudit lint MODEL.keras`).")
    unknown = set(ignore) - RULE_IDS
    if unknown:
        raise UsageError(f"regaudit.lint: unknown rule id(s) {', '.join(sorted(unknown))}; the "
                         f"rules are {', '.join(sorted(RULE_IDS))}.")
    return lint_rows(model_rows(model), steps=steps, batch_size=batch_size, ignore=set(ignore))


def train_lint(rows, params, connected=True):
    """The lint of a model at `on_train_begin`, from the layer table `RegAudit` already
    made (no pass over data): ({"findings": [...], "counts": {...}, "steps": n}, tags
    `lint.error`/`lint.warning`/`lint.info` without the `regaudit.` prefix). The planned
    steps are epochs x steps per epoch when Keras knows them. Never raises: a failure is
    one warning and no lint."""
    try:
        rows = [dict(row) for row in rows]
        if not connected:
            for row in rows:
                row["sources"] = None
        consumed = {s for row in rows for s in row.get("sources") or ()}
        for row in rows:
            row["is_output"] = (connected and row.get("parent") == ""
                                and row["name"] not in consumed)
        epochs, per_epoch = (params or {}).get("epochs"), (params or {}).get("steps")
        steps = epochs * per_epoch if epochs and per_epoch else None
        found = lint_rows(rows, steps=steps)
    except Exception as error:  # noqa: BLE001 - lint must never stop training
        warnings.warn(f"regaudit: the architecture lint failed ({type(error).__name__}: {error}); "
                      "training and the audit go on without it.", RegauditWarning, stacklevel=3)
        return None, {}
    tally = counts(found)
    return ({"findings": [f.as_dict() for f in found], "counts": tally, "steps": steps},
            {f"lint.{severity}": number for severity, number in tally.items()})
