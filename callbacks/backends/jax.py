"""The probe pass on JAX: one `jax.jit` per batch shape with the model's variables passed
in (`jax_compile`), its reductions compiled with it (`jax_reductions`), the twin's draws
traced inside it (`eager_twin.CompiledTwinOps`). The same names as `tensorflow` and
`torch` (`regaudit.callbacks.backends`)."""

import contextlib

import jax
import keras

from regaudit.callbacks.backends import jax_reductions as reductions
from regaudit.callbacks.backends.common import (
    RUNS_PASS_AT_SETUP, batch_axis_test, by_replica, captured_table,
    cond, constant, current_graph, dtype_name, fuses, host, is_floating, is_integer, is_tensor,
    library_version, rows, tensorflow_module, tile_first, to_numpy)
from regaudit.callbacks.backends.jax_twin import CompiledTwinOps as TwinOps
from regaudit.callbacks.backends.jax_compile import jax_compiled

#: this backend's whole interface: the same names in `tensorflow`, `jax` and `torch`
__all__ = ["NAME", "RUNS_PASS_AT_SETUP", "TwinOps", "batch_axis_test", "by_replica", "captured_table",
           "compiled", "cond", "constant", "current_graph", "dtype_name", "float64_on", "fuses",
           "gather_rows", "gradients", "host", "inference", "is_floating", "is_integer", "is_tensor",
           "positions", "reductions", "rows", "signature", "stack", "tensorflow_module", "tile_first",
           "to_numpy", "trace", "version", "zeros64"]

NAME = "jax"


def version():
    return library_version("jax")


def inference():
    """The block runs the model for reading only (JAX computes no gradient unless asked)."""
    return contextlib.nullcontext()


@contextlib.contextmanager
def float64_on():
    """64-bit types in the block (`jax.enable_x64`, for this block only: JAX computes in
    float32 unless told, and the model stays as it is)."""
    with jax.enable_x64(True):
        yield


def positions(start, count):
    """The probe positions start, ..., start + count - 1: `start` may be traced, `count`
    is static."""
    return keras.ops.arange(int(count), dtype="int32") + start


def compiled(function, signature, variables=(), static=()):
    """`function` compiled with `jax.jit` (`jax_compile.jax_compiled`: the model's
    `variables` passed in, the arguments at positions `static` fixed per compilation);
    `signature` matters on TensorFlow only."""
    return jax_compiled(function, variables, static)


def signature(inputs, *scalars):
    """No input signature on JAX (one compilation per input shape)."""
    return None


def zeros64(shape):
    """float64 zeros in the compiled pass."""
    with float64_on():
        return keras.ops.zeros(shape, "float64")


def stack(parts):
    """float64 parts stacked, where `zeros64` makes them."""
    with float64_on():
        return keras.ops.stack([keras.ops.cast(part, "float64") for part in parts])


def gather_rows(table, rows_):
    """The table's rows `rows_`, flattened."""
    return keras.ops.reshape(keras.ops.take(table, rows_, axis=0), [-1])


def gradients(loss, variables):
    """The gradients of `loss()` with respect to `variables`, as numpy: `jax.grad` through
    a `StatelessScope` (the variables' values passed in: nothing is assigned)."""

    def loss_of(values):
        with keras.StatelessScope(state_mapping=list(zip(variables, values))):
            return loss()

    return [host(g) for g in jax.grad(loss_of)([v.value for v in variables])]


def trace(run, specs):
    """No symbolic trace here: False, the caller runs `run` once on zeros."""
    return False
