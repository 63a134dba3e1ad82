"""The one place that knows which Keras 3 backend runs the model: TensorFlow, JAX or PyTorch.

On TensorFlow the probe pass is one compiled `tf.function` with a dynamic batch axis
(`Graph`), its reductions in the graph (`reductions`). On JAX and PyTorch it runs
eagerly (`Eager`): the model's own layers in inference mode on the model's current
variables (nothing is assigned: no optimizer, no `training=True`, on PyTorch under
`torch.no_grad()`), and every tapped tensor is reduced on the host in float64
(`host_reductions`: exact, no rescaling needed). The twin's noise is the same on every
backend (`draws`). TensorFlow is imported only on its backend (and for a `tf.data`
input).
"""

import contextlib
import sys

import keras
import numpy as np

#: what the user's model runs on
NAME = keras.backend.backend()


def is_tensorflow():
    return NAME == "tensorflow"


def tensorflow_module():
    """TensorFlow when it is already imported (a `tf.data` pipeline on any backend), else
    None: regaudit never imports it on JAX or PyTorch."""
    return sys.modules.get("tensorflow")


def to_numpy(x):
    return keras.ops.convert_to_numpy(x)


def dtype_name(tensor):
    """The tensor's dtype as Keras names it: "float32", "int64", "bool", ..."""
    return keras.backend.standardize_dtype(tensor.dtype)


def is_floating(tensor):
    return "float" in dtype_name(tensor)


def is_integer(tensor):
    return "int" in dtype_name(tensor)


def is_tensor(x):
    if NAME == "tensorflow":
        import tensorflow as tf

        return tf.is_tensor(x)
    return keras.ops.is_tensor(x)


@contextlib.contextmanager
def inference():
    """The block runs the model for reading only: on PyTorch without autograd."""
    if NAME == "torch":
        import torch

        with torch.no_grad():
            yield
    else:
        yield


def jit(function):
    """`function` compiled where that pays on an eager backend: `jax.jit` on JAX (one
    trace per input shape); as it is on PyTorch (torch.compile's first call costs
    seconds) and TensorFlow (already inside the traced pass)."""
    if NAME == "jax":
        import jax

        return jax.jit(function)
    return function


def tile_first(tensor, copies):
    """`copies` copies of `tensor` stacked along its first axis."""
    if NAME == "tensorflow":
        import tensorflow as tf

        return tf.tile(tensor, tf.concat([[copies], tf.ones([tf.rank(tensor) - 1], tf.int32)], 0))
    return keras.ops.tile(tensor, [int(copies)] + [1] * (len(tensor.shape) - 1))


def rows(tensor):
    """The number of rows (first axis) of a tensor, dynamic in a TensorFlow graph."""
    if NAME == "tensorflow":
        import tensorflow as tf

        return tf.shape(tensor)[0]
    return int(tensor.shape[0])


def arange(start, stop):
    if NAME == "tensorflow":
        import tensorflow as tf

        return tf.range(start, stop)
    return np.arange(int(start), int(stop))


def constant(value, dtype):
    """An argument of the compiled pass: a tensor for TensorFlow's input signature, the
    value itself on the eager backends."""
    if NAME == "tensorflow":
        import tensorflow as tf

        return tf.constant(value, dtype)
    return value


def cond(pred, true_fn, false_fn):
    if NAME == "tensorflow":
        import tensorflow as tf

        return tf.cond(pred, true_fn, false_fn)
    return true_fn() if pred else false_fn()


def compiled(function, signature):
    """The pass ready to call: TensorFlow traces `function` once over `signature` (a
    callable returning the input specs: a dynamic batch axis) and returns the concrete
    function; the eager backends call `function` as it is, for reading only, its
    inputs made backend tensors."""
    if NAME == "tensorflow":
        import tensorflow as tf

        return tf.function(function, input_signature=signature(), autograph=False).get_concrete_function()

    def run(inputs, *args):
        with inference():
            inputs = keras.tree.map_structure(keras.ops.convert_to_tensor, inputs)
            return function(inputs, *args)

    return run


def host(value):
    """A pass output as numpy."""
    return np.asarray(value.numpy() if hasattr(value, "numpy") and NAME == "tensorflow" else to_numpy(value))


def version():
    """The backend library's version (tensorflow, jax or torch)."""
    module = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}.get(NAME, NAME)
    return getattr(__import__(module), "__version__", "unknown")


def signature(inputs, *scalars):
    """TensorFlow's input signature of a pass: the probe's input structure with a free
    batch axis, then one `(shape, dtype)` per further argument."""
    import tensorflow as tf

    def spec(array):
        return tf.TensorSpec((None,) + array.shape[1:], tf.as_dtype(array.dtype))

    return [keras.tree.map_structure(spec, inputs)] + [tf.TensorSpec(shape, dtype) for shape, dtype in scalars]


def by_replica(tiled, copies, batch):
    """A tiled output [copies * batch, ...] as [copies, batch, ...]."""
    if NAME == "tensorflow":
        import tensorflow as tf

        return tf.reshape(tiled, tf.concat([[copies, batch], tf.shape(tiled)[1:]], 0))
    return keras.ops.reshape(tiled, (int(copies), int(batch)) + tuple(tiled.shape[1:]))


def zeros64(shape):
    """float64 zeros: in TensorFlow's graph, else numpy (the eager passes' counts)."""
    if NAME == "tensorflow":
        import tensorflow as tf

        return tf.zeros(shape, tf.float64)
    return np.zeros(shape)


def stack(parts):
    if NAME == "tensorflow":
        import tensorflow as tf

        return tf.stack(parts)
    return np.stack([host(part) for part in parts])


def captured_table(array):
    """A constant table a pass reads (the reservoir positions): on TensorFlow an eager
    tensor the function captures as an input (not a large literal in the graph, which
    graph optimisation would copy and fold at the first call, and not a variable, whose
    creation would make `tf.function` trace twice); else the numpy array."""
    if NAME != "tensorflow":
        return array
    import tensorflow as tf

    with tf.init_scope():
        return tf.constant(array)


def gather_rows(table, rows):
    """The table's rows `rows`, flattened."""
    if NAME != "tensorflow":
        return table[rows].reshape(-1)
    import tensorflow as tf

    return tf.reshape(tf.gather(table, rows), [-1])
