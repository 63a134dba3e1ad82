"""How the twin (`regaudit.callbacks.probe.twin.NoiseTwin`) draws, shapes and counts
inside JAX's compiled pass (`jax_compile`): shapes are static, the probe position, the
replica block and `active` traced; the draws are compiled with the pass (XLA fuses the
hash into the mask), the counts and the noise energy summed in float64 on the device,
as in TensorFlow's graph."""

import jax
from keras import ops

from regaudit.callbacks.backends import draws
from regaudit.callbacks.backends.eager_twin import EagerTwinOps


class CompiledTwinOps(EagerTwinOps):
    """`EagerTwinOps` where a value is traced: the keys, the switch and the counts."""

    def square_sum(self, x):
        with jax.enable_x64(True):
            return ops.sum(ops.square(ops.cast(x, "float64")))

    def dropped(self, on, keep):
        with jax.enable_x64(True):
            return ops.sum(ops.cast(ops.logical_and(on, ops.logical_not(keep)), "float64"))

    def stream(self, seed, start, offset, index, part):
        return draws.key_tensor(seed, start, offset, index, part)

    def switch(self, shape, det_rows, active, index):
        rows = ops.reshape(ops.arange(shape[0]), (-1,) + (1,) * (len(shape) - 1))
        on = rows >= (0 if det_rows is None else int(det_rows))
        if active is not None:
            on = ops.logical_and(on, ops.convert_to_tensor(active)[index] > 0)
        return on

    def counted(self, total, numerator, on, entries_shape, per_entry=1.0):
        with jax.enable_x64(True):
            seen = ops.sum(ops.cast(ops.broadcast_to(on, entries_shape), "float64"))
            part = ops.stack([ops.cast(numerator, "float64") * per_entry, seen * per_entry])
            return part if total is None else total + part
