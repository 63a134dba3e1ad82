"""A study's variant of the user's model, built and compiled (the Keras side of
`regaudit.studies.rewrite`).

Each layer's role comes from the live layer through `regaudit.model.regularizers` (a subclass of
Dropout is a Dropout), so the config rewrite never guesses from a class name it does not
know. The variant is a fresh model from the rewritten config (new weights), compiled with
the original model's compile settings and its optimizer's learning rate times `lr`.
"""

import keras

from regaudit.model import regularizers
from regaudit.errors import RegauditError, error_line
from regaudit.studies import rewrite


def _role(layer):
    names = regularizers.class_names(layer)
    if isinstance(layer, keras.Model) and hasattr(layer, "_layers") and \
            any(n in ("Sequential", "Functional") for n in names):
        return "model"
    if regularizers.is_batchnorm(layer):
        return "batchnorm"
    if regularizers.noise_kind(layer) == "dropout":
        return "dropout"
    if regularizers.noise_kind(layer) is not None:
        return "noise"  # AlphaDropout, GaussianDropout, GaussianNoise: kept as they are
    if regularizers.is_attention(layer):
        return "attention"
    if regularizers.is_rnn(layer) or "Bidirectional" in names:
        return "rnn"
    for role, classes in (("unit", rewrite.UNIT_CLASSES), ("activation", rewrite.ACTIVATION_CLASSES)):
        if any(n in classes for n in names):
            return role
    inner = [sub for sub in layer._flatten_layers(include_self=False)]
    if any(regularizers.is_batchnorm(s) or regularizers.noise_kind(s) for s in inner):
        return "custom"  # its own call() holds them: a config cannot move them
    return None


def roles(model):
    """{layer name: role} for the layers of `model` and of the models nested in it."""
    out = {}
    for layer in model.layers:
        role = _role(layer)
        if role is not None:
            out[layer.name] = role
        if role == "model":
            out.update(roles(layer))
    return out


def ranks(model):
    """{Dropout layer name: the rank of its input} (which SpatialDropout fits)."""
    out = {}
    for layer in model.layers:
        if _role(layer) == "model":
            out.update(ranks(layer))
        elif _role(layer) == "dropout":
            try:
                out[layer.name] = len(layer.input.shape)
            except (AttributeError, ValueError):
                pass
    return out


def is_graph_model(model):
    """Whether `model` is Sequential or Functional (its config is its whole graph)."""
    return (isinstance(model, keras.Sequential) or type(model).__name__ == "Functional"
            or getattr(model, "_is_graph_network", False)
            or "Functional" in regularizers.class_names(model))


def needs_builder(model):
    """Why `model` cannot be rewritten (one line), or None."""
    if not is_graph_model(model):
        return (f"model '{model.name}' is a subclassed {type(model).__name__}, whose call() a "
                f"config cannot rewrite; give a builder `module:function` "
                f"({rewrite.BUILDER_SIGNATURE})")
    custom = [name for name, role in roles(model).items() if role == "custom"]
    if custom:
        return (f"layer '{custom[0]}' holds Dropout or BatchNormalization inside its own code; "
                f"give a builder `module:function` ({rewrite.BUILDER_SIGNATURE})")
    return None


def compile_like(variant, model, lr=1.0):
    """Compile `variant` as `model` was compiled, the learning rate times `lr`."""
    config = model.get_compile_config() if getattr(model, "compiled", False) else None
    if not config:
        raise RegauditError(f"model '{model.name}' is not compiled; expected a compiled model "
                            "(compile it, or save it after compile) so each variant trains alike")
    optimizer = config.get("optimizer")
    if isinstance(optimizer, str):
        optimizer = keras.optimizers.get(optimizer)
    elif isinstance(optimizer, dict):
        optimizer = keras.optimizers.deserialize(optimizer)
    else:
        optimizer = optimizer.__class__.from_config(optimizer.get_config())
    if lr != 1.0:
        rate = optimizer.get_config().get("learning_rate")
        if not isinstance(rate, (int, float)):
            raise RegauditError(f"optimizer learning rate {rate!r} is a schedule; a learning-rate "
                                "factor needs a float rate (or a builder that takes lr=)")
        optimizer = optimizer.__class__.from_config(optimizer.get_config() | {"learning_rate": rate * lr})
    variant.compile_from_config(config | {"optimizer": keras.optimizers.serialize(optimizer)})
    return variant


def rebuild(model, config):
    """A fresh model from `config` (a serialized `model`, rewritten or not), the model's
    own layer classes given as custom objects (so unregistered custom layers load)."""
    classes = {type(layer).__name__: type(layer) for layer in model._flatten_layers(include_self=True)}
    return keras.saving.deserialize_keras_object(config, custom_objects=classes)


def build_variant(model, levels):
    """(a fresh compiled model with `levels`, [notes]) from a Sequential or Functional model."""
    why = needs_builder(model)
    structural = {k: v for k, v in levels.items() if k != "lr"}
    # a subclassed model is never rebuilt from its config, whatever the design: even the
    # model as given would be a copy its own code may not make (Keras' get_config of a
    # subclassed model guesses from __init__'s arguments)
    if why is not None and (structural or not is_graph_model(model)):
        raise rewrite.NeedsBuilder(why)
    try:
        config = keras.saving.serialize_keras_object(model)
        new_config, notes = rewrite.apply(config, structural, roles(model), ranks(model))
        variant = rebuild(model, new_config)
    except RegauditError:
        raise
    except Exception as error:  # noqa: BLE001 - Keras' own, said as what to give instead
        raise rewrite.NeedsBuilder(
            f"model '{model.name}' cannot be rebuilt from its config ({type(error).__name__}: "
            f"{error_line(error, 120)}); give a builder `module:function` ({rewrite.BUILDER_SIGNATURE})"
        ) from None
    return compile_like(variant, model, float(levels.get("lr", 1.0))), notes
