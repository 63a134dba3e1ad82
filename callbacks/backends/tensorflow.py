"""The probe pass on TensorFlow: one `tf.function` with a dynamic batch axis, its
reductions in the graph (`tensorflow_reductions`), the twin's draws XLA-fused
(`tensorflow_twin`). The same names as `jax` and `torch` (`regaudit.callbacks.backends`)."""

import contextlib

import keras
import numpy as np
import tensorflow as tf

from regaudit.callbacks.backends import tensorflow_reductions as reductions
from regaudit.callbacks.backends.common import (
    dtype_name, is_floating, is_integer, library_version,
    tensorflow_module, to_numpy)
from regaudit.callbacks.backends.tensorflow_reductions import fuses
from regaudit.callbacks.backends.tensorflow_twin import GraphTwinOps as TwinOps

#: this backend's whole interface: the same names in `tensorflow`, `jax` and `torch`
__all__ = ["NAME", "RUNS_PASS_AT_SETUP", "TwinOps", "batch_axis_test", "by_replica", "captured_table",
           "compiled", "cond", "constant", "current_graph", "dtype_name", "float64_on", "fuses",
           "gather_rows", "gradients", "host", "inference", "is_floating", "is_integer", "is_tensor",
           "positions", "reductions", "rows", "signature", "stack", "tensorflow_module", "tile_first",
           "to_numpy", "trace", "version", "zeros64"]

NAME = "tensorflow"
#: TensorFlow's trace meets the taps when it compiles the pass: no run at set-up
RUNS_PASS_AT_SETUP = False


def version():
    return library_version("tensorflow")


def is_tensor(x):
    return tf.is_tensor(x)


def inference():
    """The block runs the model for reading only (nothing to switch off here)."""
    return contextlib.nullcontext()


def float64_on():
    """64-bit types in the block: always available on TensorFlow."""
    return contextlib.nullcontext()


def tile_first(tensor, copies):
    """`copies` copies of `tensor` stacked along its first axis."""
    return tf.tile(tensor, tf.concat([[copies], tf.ones([tf.rank(tensor) - 1], tf.int32)], 0))


def rows(tensor):
    """The number of rows (first axis) of a tensor, dynamic in the graph."""
    return tf.shape(tensor)[0]


def positions(start, count):
    """The probe positions start, ..., start + count - 1 (`start` may be traced)."""
    return tf.range(start, start + count)


def constant(value, dtype):
    """An argument of the compiled pass: a tensor for the input signature."""
    return tf.constant(value, dtype)


def cond(pred, true_fn, false_fn):
    return tf.cond(pred, true_fn, false_fn)


def compiled(function, signature, variables=(), static=()):
    """`function` traced once over `signature()` (the input specs: a dynamic batch axis)
    as a concrete function, called as `pass_(inputs, *args)`; `variables` and `static`
    matter on JAX only."""
    return tf.function(function, input_signature=signature(), autograph=False).get_concrete_function()


def host(value):
    """A pass output as numpy."""
    return np.asarray(value.numpy() if hasattr(value, "numpy") else to_numpy(value))


def signature(inputs, *scalars):
    """The input signature of a pass: the probe's input structure with a free batch axis,
    then one `(shape, dtype)` per further argument."""

    def spec(array):
        return tf.TensorSpec((None,) + array.shape[1:], tf.as_dtype(array.dtype))

    return [keras.tree.map_structure(spec, inputs)] + [tf.TensorSpec(shape, dtype) for shape, dtype in scalars]


def by_replica(tiled, copies, batch):
    """A tiled output [copies * batch, ...] as [copies, batch, ...]."""
    return tf.reshape(tiled, tf.concat([[copies, batch], tf.shape(tiled)[1:]], 0))


def zeros64(shape):
    """float64 zeros in the graph."""
    return tf.zeros(shape, tf.float64)


def stack(parts):
    """float64 parts stacked, where `zeros64` makes them."""
    return tf.stack(parts)


def captured_table(array):
    """A constant table a pass reads (the reservoir positions): an eager tensor the
    function captures as an input (not a large literal in the graph, which graph
    optimisation would copy and fold at the first call, and not a variable, whose creation
    would make `tf.function` trace twice)."""
    with tf.init_scope():
        return tf.constant(array)


def gather_rows(table, rows_):
    """The table's rows `rows_`, flattened."""
    return tf.reshape(tf.gather(table, rows_), [-1])


def batch_axis_test(rows_):
    """Whether a tensor has the batch axis first: in the trace, a first axis of unknown
    size (the input signature's)."""
    return lambda tensor: bool(tensor.shape.rank) and tensor.shape[0] is None


def gradients(loss, variables):
    """The gradients of `loss()` with respect to `variables` (Keras variables), as numpy."""
    with tf.GradientTape() as tape:
        value = loss()
    return [host(g) for g in tape.gradient(value, variables)]


def trace(run, specs):
    """Trace `run` symbolically on `specs` ((shape, dtype) or a list of them): nothing is
    computed. True: traced (the eager backends return False and run it themselves)."""
    is_spec = lambda s: isinstance(s, tuple) and len(s) == 2 and isinstance(s[0], tuple)  # noqa: E731
    to_spec = lambda s: tf.TensorSpec(s[0], s[1])  # noqa: E731
    inputs = [to_spec(s) for s in specs] if not is_spec(specs) else to_spec(specs)
    tf.function(run, autograph=False).get_concrete_function(inputs)
    return True


def current_graph():
    """The graph being built now: a layer call made in another one (Keras' build-by-run
    scratch graph, a tf.cond or while-loop body) cannot hand its tensors out."""
    return tf.compat.v1.get_default_graph()
