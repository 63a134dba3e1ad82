"""The twin's noise off TensorFlow: how `twin.NoiseTwin`'s formulas get their shapes,
keys, draws and counts on PyTorch (`EagerNoiseTwin`: everything concrete, counts read
on the host) and on JAX (`CompiledNoiseTwin`: inside `jax.jit`, shapes static, the probe
position, the replica block and `active` traced, counts in float64 on the device). The
draws are `draws`' on both: the same masks as TensorFlow's twin."""

import numpy as np
from keras import ops

from regaudit.callbacks.backends import backend

from regaudit.callbacks.backends import draws
from regaudit.callbacks.backends import keras_internals as internals
from regaudit.callbacks.probe.twin import NoiseTwin


class EagerNoiseTwin(NoiseTwin):
    """The twin on PyTorch: the pass runs eagerly, so shapes, the probe position, the
    replica block and `active` are concrete; the keys and the draws are `draws`' (the
    same masks as on TensorFlow), each count summed on the device and read once."""

    def _noise_shape(self, layer, x):
        shape = internals.spatial_noise_shape(layer, x)
        if shape is None:
            shape = getattr(layer, "noise_shape", None)
        if shape is None:
            return tuple(x.shape)
        return tuple(int(x.shape[i]) if d is None else int(d) for i, d in enumerate(shape))

    def _like(self, out, x):
        return out  # the draws' shapes are concrete here

    def _shape(self, x):
        return tuple(x.shape)

    def _entries(self, x):
        return float(np.prod(tuple(x.shape)))

    def _shape_entries(self, shape):
        return float(np.prod(shape))

    def _draw(self, kind, shape, key):
        """`draws.uniform` or `draws.normal` over a tensor of `shape`; `key` an int or an
        int32 scalar tensor."""
        index = ops.reshape(ops.arange(int(np.prod(shape)), dtype="int32"), shape)
        return getattr(draws, kind)(index, key)

    def _uniform(self, shape, key, like):
        return self._draw("uniform", shape, key)

    def _normal(self, shape, key, like, mean=0.0, stddev=1.0):
        return ops.cast(self._draw("normal", shape, key), like.dtype) * stddev + mean

    def _square_sum(self, x):
        return float(backend.host(ops.sum(ops.square(ops.cast(x, "float32")))))

    def _dropped(self, on, keep):
        return float(backend.host(ops.sum(ops.cast(ops.logical_and(on, ops.logical_not(keep)), "int32"))))

    def _stream(self, index, part=0):
        offset = 0 if self.offset is None else int(self.offset)
        return draws.key_int(self.seed, self.start, offset, index, part)

    def _switch(self, index, shape):
        rows = np.arange(shape[0]).reshape((-1,) + (1,) * (len(shape) - 1))
        on = rows >= (0 if self.det_rows is None else int(self.det_rows))
        if self.active is not None:
            on = on & (np.asarray(self.active)[index] > 0)
        return ops.convert_to_tensor(on)

    def _count(self, index, numerator, on, entries_shape, per_entry=1.0):
        if self.det_rows is None:
            return
        seen = float(np.count_nonzero(np.broadcast_to(backend.to_numpy(on), entries_shape)))
        part = np.array([float(backend.to_numpy(numerator)) * per_entry, seen * per_entry])
        self.counts[index] = part if index not in self.counts else self.counts[index] + part


class CompiledNoiseTwin(EagerNoiseTwin):
    """The twin inside JAX's compiled pass (`jax_compile`): shapes are static, the probe
    position, the replica block and `active` are traced; the draws are compiled with the
    pass (XLA fuses the hash into the mask), the counts and the noise energy summed in
    float64 on the device, as in TensorFlow's graph."""

    def _square_sum(self, x):
        with backend.float64_on():
            return ops.sum(ops.square(ops.cast(x, "float64")))

    def _dropped(self, on, keep):
        with backend.float64_on():
            return ops.sum(ops.cast(ops.logical_and(on, ops.logical_not(keep)), "float64"))

    def _stream(self, index, part=0):
        return draws.key_tensor(self.seed, self.start, 0 if self.offset is None else self.offset, index, part)

    def _switch(self, index, shape):
        rows = ops.reshape(ops.arange(shape[0]), (-1,) + (1,) * (len(shape) - 1))
        on = rows >= (0 if self.det_rows is None else int(self.det_rows))
        if self.active is not None:
            on = ops.logical_and(on, ops.convert_to_tensor(self.active)[index] > 0)
        return on

    def _count(self, index, numerator, on, entries_shape, per_entry=1.0):
        if self.det_rows is None:
            return
        with backend.float64_on():
            seen = ops.sum(ops.cast(ops.broadcast_to(on, entries_shape), "float64"))
            part = ops.stack([ops.cast(numerator, "float64") * per_entry, seen * per_entry])
            self.counts[index] = part if index not in self.counts else self.counts[index] + part
