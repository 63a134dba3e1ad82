"""The one place that knows which Keras 3 backend runs the model: TensorFlow, JAX or PyTorch.

On TensorFlow the probe pass is one compiled `tf.function` with a dynamic batch axis,
its reductions in the graph (`reductions`). On JAX it is one `jax.jit` per batch shape
(`jax_compile`) with the model's variables passed in, its reductions compiled with it
(`device_reductions`: TensorFlow's, in `jax.numpy`). On PyTorch it runs eagerly under `torch.no_grad()`, every
tapped tensor reduced on the host in float64 (`host_reductions`). On each, the model's own
layers run in inference mode on its current variables and nothing is assigned (no
optimizer, no `training=True`). The twin's noise is the same on every
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


@contextlib.contextmanager
def float64_on():
    """64-bit types available in the block: on JAX, which computes in float32 unless told
    (`jax.enable_x64`, for this block only: the model stays as it is); elsewhere nothing
    to do."""
    if NAME == "jax":
        import jax

        with jax.enable_x64(True):
            yield
    else:
        yield


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


def positions(start, count):
    """The probe positions start, ..., start + count - 1: on TensorFlow and JAX `start` may
    be traced (`count` is static on JAX), on PyTorch both are concrete."""
    if NAME == "tensorflow":
        import tensorflow as tf

        return tf.range(start, start + count)
    if NAME == "jax":
        return keras.ops.arange(int(count), dtype="int32") + start
    return np.arange(int(start), int(start) + int(count))


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


def compiled(function, signature, variables=(), static=()):
    """The pass ready to call as `pass_(inputs, *args)`: TensorFlow traces `function` once
    over `signature` (a callable returning the input specs: a dynamic batch axis) and
    returns the concrete function; JAX compiles it with `jax.jit` (`jax_compiled`: the
    model's `variables` passed in, the arguments at positions `static` of `args` fixed
    per compilation); PyTorch calls it as it is, for reading only. The inputs are made
    backend tensors."""
    if NAME == "tensorflow":
        import tensorflow as tf

        return tf.function(function, input_signature=signature(), autograph=False).get_concrete_function()
    if NAME == "jax":
        from regaudit.callbacks.backends.jax_compile import jax_compiled

        return jax_compiled(function, variables, static)

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
    """float64 zeros: in TensorFlow's graph, in JAX's compiled pass, else numpy (PyTorch's
    counts)."""
    if NAME == "tensorflow":
        import tensorflow as tf

        return tf.zeros(shape, tf.float64)
    if NAME == "jax":
        with float64_on():
            return keras.ops.zeros(shape, "float64")
    return np.zeros(shape)


def stack(parts):
    """float64 parts stacked, where `zeros64` makes them."""
    if NAME == "tensorflow":
        import tensorflow as tf

        return tf.stack(parts)
    if NAME == "jax":
        with float64_on():
            return keras.ops.stack([keras.ops.cast(part, "float64") for part in parts])
    return np.stack([host(part) for part in parts])


def captured_table(array):
    """A constant table a pass reads (the reservoir positions): on TensorFlow an eager
    tensor the function captures as an input (not a large literal in the graph, which
    graph optimisation would copy and fold at the first call, and not a variable, whose
    creation would make `tf.function` trace twice); else the numpy array."""
    if NAME != "tensorflow":  # numpy: a constant of each compiled JAX pass
        return array
    import tensorflow as tf

    with tf.init_scope():
        return tf.constant(array)


def gather_rows(table, rows):
    """The table's rows `rows`, flattened."""
    if NAME == "jax":
        return keras.ops.reshape(keras.ops.take(table, rows, axis=0), [-1])
    if NAME != "tensorflow":
        return table[rows].reshape(-1)
    import tensorflow as tf

    return tf.reshape(tf.gather(table, rows), [-1])
