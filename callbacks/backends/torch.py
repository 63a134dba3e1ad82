"""The probe pass on PyTorch (and any other eager backend): the pass runs eagerly under
`torch.no_grad()`, every tapped tensor reduced on the host in float64
(`host_reductions`), the twin's draws concrete (`eager_twin.EagerTwinOps`). The same
names as `tensorflow` and `jax` (`regaudit.callbacks.backends`)."""

import contextlib

import keras
import numpy as np

from regaudit.callbacks.backends import host_reductions as reductions
from regaudit.callbacks.backends.common import (
    RUNS_PASS_AT_SETUP, batch_axis_test, by_replica, captured_table,
    cond, constant, current_graph, dtype_name, fuses, host, is_floating, is_integer, is_tensor,
    library_version, rows, tensorflow_module, tile_first, to_numpy)
from regaudit.callbacks.backends.eager_twin import EagerTwinOps as TwinOps

#: this backend's whole interface: the same names in `tensorflow`, `jax` and `torch`
__all__ = ["NAME", "RUNS_PASS_AT_SETUP", "TwinOps", "batch_axis_test", "by_replica", "captured_table",
           "compiled", "cond", "constant", "current_graph", "dtype_name", "float64_on", "fuses",
           "gather_rows", "gradients", "host", "inference", "is_floating", "is_integer", "is_tensor",
           "positions", "reductions", "rows", "signature", "stack", "tensorflow_module", "tile_first",
           "to_numpy", "trace", "version", "zeros64"]

NAME = keras.backend.backend()


def version():
    return library_version(NAME)


@contextlib.contextmanager
def inference():
    """The block runs the model for reading only: without autograd."""
    import torch  # this module also serves eager backends other than PyTorch

    with torch.no_grad():
        yield


def float64_on():
    """64-bit types in the block: always available here."""
    return contextlib.nullcontext()


def positions(start, count):
    """The probe positions start, ..., start + count - 1 (both concrete)."""
    return np.arange(int(start), int(start) + int(count))


def compiled(function, signature, variables=(), static=()):
    """`function` as it is, called for reading only, the inputs made tensors; the other
    arguments matter on TensorFlow and JAX."""

    def run(inputs, *args):
        with inference():
            inputs = keras.tree.map_structure(keras.ops.convert_to_tensor, inputs)
            return function(inputs, *args)

    return run


def signature(inputs, *scalars):
    """No input signature on an eager backend."""
    return None


def zeros64(shape):
    """float64 zeros on the host (the counts)."""
    return np.zeros(shape)


def stack(parts):
    """float64 parts stacked, where `zeros64` makes them."""
    return np.stack([host(part) for part in parts])


def gather_rows(table, rows_):
    """The table's rows `rows_`, flattened."""
    return table[rows_].reshape(-1)


def gradients(loss, variables):
    """The gradients of `loss()` with respect to `variables`, as numpy (autograd on)."""
    import torch

    with torch.enable_grad():
        return [host(g) for g in torch.autograd.grad(loss(), [v.value for v in variables])]


def trace(run, specs):
    """No symbolic trace here: False, the caller runs `run` once on zeros."""
    return False
