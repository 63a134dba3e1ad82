"""How the twin (`regaudit.callbacks.probe.twin.NoiseTwin`) draws, shapes and counts on
PyTorch (`EagerTwinOps`: the pass runs eagerly, everything concrete, counts read on the
host). JAX's (`jax_twin.CompiledTwinOps`) builds on it. The draws are `draws`': the same
masks as TensorFlow's twin (`tensorflow_twin`)."""

import numpy as np
from keras import ops

from regaudit.callbacks.backends import draws
from regaudit.callbacks.backends import keras_internals as internals
from regaudit.callbacks.backends.common import host, to_numpy


class EagerTwinOps:
    """The twin's tensor operations on an eager backend: shapes, the probe position, the
    replica block and `active` are concrete; each count is summed on the device and read
    once (the same methods as `tensorflow_twin.GraphTwinOps`)."""

    def noise_shape(self, layer, x):
        shape = internals.spatial_noise_shape(layer, x)  # SpatialDropout: whole channels
        if shape is None:
            shape = getattr(layer, "noise_shape", None)
        if shape is None:
            return tuple(x.shape)
        return tuple(int(x.shape[i]) if d is None else int(d) for i, d in enumerate(shape))

    def like(self, out, x):
        return out  # the draws' shapes are concrete here

    def shape(self, x):
        return tuple(x.shape)

    def entries(self, x):
        return float(np.prod(tuple(x.shape)))

    def shape_entries(self, shape):
        return float(np.prod(shape))

    @staticmethod
    def _draw(kind, shape, key):
        """`draws.uniform` or `draws.normal` over a tensor of `shape`; `key` an int or an
        int32 scalar tensor."""
        index = ops.reshape(ops.arange(int(np.prod(shape)), dtype="int32"), shape)
        return getattr(draws, kind)(index, key)

    def uniform(self, shape, key, like):
        return self._draw("uniform", shape, key)

    def normal(self, shape, key, like, mean=0.0, stddev=1.0):
        return ops.cast(self._draw("normal", shape, key), like.dtype) * stddev + mean

    def square_sum(self, x):
        return float(host(ops.sum(ops.square(ops.cast(x, "float32")))))

    def dropped(self, on, keep):
        return float(host(ops.sum(ops.cast(ops.logical_and(on, ops.logical_not(keep)), "int32"))))

    def stream(self, seed, start, offset, index, part):
        return draws.key_int(seed, start, int(offset), index, part)

    def switch(self, shape, det_rows, active, index):
        rows = np.arange(shape[0]).reshape((-1,) + (1,) * (len(shape) - 1))
        on = rows >= (0 if det_rows is None else int(det_rows))
        if active is not None:
            on = on & (np.asarray(active)[index] > 0)
        return ops.convert_to_tensor(on)

    def counted(self, total, numerator, on, entries_shape, per_entry=1.0):
        """`total` (None: nothing yet) plus [numerator, entries seen], float64."""
        seen = float(np.count_nonzero(np.broadcast_to(to_numpy(on), entries_shape)))
        part = np.array([float(to_numpy(numerator)) * per_entry, seen * per_entry])
        return part if total is None else total + part
