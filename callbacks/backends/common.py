"""What every backend module shares (`regaudit.callbacks.backends`): dtype questions asked
through Keras, and the eager forms of the pass's tensor helpers that JAX and PyTorch both
use (concrete row counts, Python branches, `keras.ops` tiling)."""

import sys

import keras
import numpy as np

#: the twin's mode for a BN input that no noise reaches: "same as the inference pass"
UNCHANGED = "unchanged"
#: a count no real moment can have: marks "same as the inference pass" in the twin's output
UNCHANGED_MARK = -1.0


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


def library_version(module):
    """The version of the backend library `module` ("tensorflow", "jax", "torch")."""
    return getattr(__import__(module), "__version__", "unknown")


def is_tensor(x):
    return keras.ops.is_tensor(x)


def tile_first(tensor, copies):
    """`copies` copies of `tensor` stacked along its first axis."""
    return keras.ops.tile(tensor, [int(copies)] + [1] * (len(tensor.shape) - 1))


def rows(tensor):
    """The number of rows (first axis) of a tensor: concrete off TensorFlow."""
    return int(tensor.shape[0])


def constant(value, dtype):
    """An argument of the compiled pass: the value itself on the eager backends."""
    return value


def cond(pred, true_fn, false_fn):
    return true_fn() if pred else false_fn()


def host(value):
    """A pass output as numpy."""
    return np.asarray(to_numpy(value))


def by_replica(tiled, copies, batch):
    """A tiled output [copies * batch, ...] as [copies, batch, ...]."""
    return keras.ops.reshape(tiled, (int(copies), int(batch)) + tuple(tiled.shape[1:]))


def captured_table(array):
    """A constant table a pass reads (the reservoir positions): the numpy array, a
    constant of each compiled JAX pass."""
    return array


def batch_axis_test(rows_):
    """Whether a tensor has the batch axis first: off TensorFlow, a first axis of `rows_`,
    the inputs' row count (an output whose first axis happens to equal it is taken for one)."""
    return lambda tensor: len(tensor.shape) > 0 and tensor.shape[0] == rows_


def fuses(shape, rows_, audits):
    """XLA fusion per tap is TensorFlow's: JAX compiles the whole pass, PyTorch runs eagerly."""
    return False


#: whether the probe pass's set-up runs it once to meet the taps (the eager backends and
#: JAX's trace do; TensorFlow's trace meets them when it compiles)
RUNS_PASS_AT_SETUP = True


def current_graph():
    """The graph being built now: None on JAX and PyTorch, which have no graph of their own."""
    return None
