"""The twin: the model with every noise source on, each drawing its own stateless noise.

The twin runs the model's own layer objects (shared weights, no copy) through
`graph.run_graph` with `NoiseTwin.override`: every noise source of
`regaudit.model.regularizers` (the Dropout family wherever it sits, the Dropout inside
MultiHeadAttention, an RNN cell's dropout and recurrent dropout) is replaced by one noise
function per kind, seeded by the audit seed, the probe position, the replica block and the
source's index, so every audit draws the same noise and no seed state of the model moves.
Everything else, BatchNormalization above all, stays in inference mode. `LazyTile` makes
the Monte-Carlo copies of a batch only from the first noise source on.

The noise formulas are written once here in `keras.ops`, and every draw comes from
`regaudit.callbacks.backends.draws` (the same bits on every backend); what differs by
backend is how a shape, a stream's key and a count are made, the backend's `TwinOps`
(`backends.tensorflow_twin`: TensorFlow's graph, a dynamic batch axis, the probe position
a tensor; `backends.jax_twin`: static shapes, traced positions; `backends.eager_twin`:
PyTorch, everything concrete), which `NoiseTwin` holds.
"""

import keras
import numpy as np
from keras import ops

from regaudit.model.regularizers import is_rnn, rnn_cells

from regaudit.callbacks.backends import backend
from regaudit.callbacks.backends import keras_internals as internals

#: AlphaDropout's constants (Klambauer et al. 2017; Keras' AlphaDropout)
_ALPHA_P = -1.6732632423543772848170429916717 * 1.0507009873554804934193349852946


class NoiseTwin:
    """The noise functions of one traced twin call.

    `sources`: the probe pass's list of `regaudit.model.regularizers.Source` (filled during the
    first walk of the trace; its order is the order of `active`). Set per call: `start`
    (probe position), `offset` (replica block), `active` (float per source: > 0 on; None:
    all on), `det_rows` (leading rows kept deterministic; None: none, and no counting).
    `counts` collects per source index [numerator, denominator] of its drop measure:
    inputs zeroed and inputs seen for masks, sum of squared noise and values seen for
    Gaussian noise (the multiplier's deviation from 1, or the addend).
    """

    def __init__(self, seed, sources):
        self.seed = seed
        self.sources = sources
        self.start = self.offset = self.active = self.det_rows = None
        self.counts = {}
        #: the backend's tensor operations (`backend.TwinOps`)
        self.ops = backend.TwinOps()

    def _index(self):
        return {source.name: (i, source) for i, source in enumerate(self.sources)}

    def override(self, layer, name):
        index = self._index()
        if name in index:
            position, source = index[name]
            def noise(proceed, x, *args, **kwargs):
                out = self.ops.like(self._layer_noise(position, source, layer, x), x)
                # a Dropout passes its input's mask on (padding stays padding downstream)
                mask = kwargs.get("mask", internals.get_keras_mask(x))
                if mask is not None:
                    internals.set_keras_mask(out, mask)
                return out

            return noise
        if is_rnn(layer) and any(key.startswith(name + "/") for key in index):
            return self._rnn(layer, name, index)
        return None

    # how this twin draws, shapes and counts: the backend's (`backend.TwinOps`)

    def _stream(self, index, part=0):
        """The key of this source's draws at this probe position and replica block."""
        return self.ops.stream(self.seed, self.start, 0 if self.offset is None else self.offset, index, part)

    def _switch(self, index, shape):
        """Boolean, broadcastable to `shape`: rows past `det_rows`, source active."""
        return self.ops.switch(shape, self.det_rows, self.active, index)

    def _count(self, index, numerator, on, entries_shape, per_entry=1.0):
        if self.det_rows is not None:
            self.counts[index] = self.ops.counted(self.counts.get(index), numerator, on, entries_shape, per_entry)

    def _layer_noise(self, index, source, layer, x):
        """The noise of a Dropout-family layer: the function named by its kind's
        `regaudit.model.regularizers.NoiseKind.noise`."""
        return getattr(self, f"_{source.noise}")(index, float(source.rate), layer, x)

    def _drawn_mask(self, index, rate, layer, x):
        """(kept as x's dtype, where this source is on) for a mask of `rate`, counting
        the inputs it zeroes (each mask entry stands for size(x) / size(mask) inputs:
        SpatialDropout)."""
        shape = self.ops.noise_shape(layer, x)
        keep = self.ops.uniform(shape, self._stream(index), x) >= rate
        on = self._switch(index, shape)
        per_entry = self.ops.entries(x) / self.ops.shape_entries(shape)
        self._count(index, self.ops.dropped(on, keep), on, shape, per_entry)
        return ops.cast(keep, x.dtype), on

    def _mask(self, index, rate, layer, x):
        """Inverted dropout: x * keep / (1 - rate)."""
        kept, on = self._drawn_mask(index, rate, layer, x)
        return x * ops.where(on, kept / ops.cast(1.0 - rate, x.dtype), ops.ones_like(kept))

    def _alpha(self, index, rate, layer, x):
        """AlphaDropout (Klambauer et al. 2017): a(x keep + alpha' (1 - keep)) + b."""
        kept, on = self._drawn_mask(index, rate, layer, x)
        a = ((1 - rate) * (1 + rate * _ALPHA_P**2)) ** -0.5
        b = -a * _ALPHA_P * rate
        noisy = a * (x * kept + _ALPHA_P * (1 - kept)) + b
        return ops.where(ops.broadcast_to(on, self.ops.shape(noisy)), noisy, x)

    def _multiply(self, index, rate, layer, x):
        """GaussianDropout: x * m, m ~ N(1, rate / (1 - rate))."""
        shape = self.ops.shape(x)
        on = self._switch(index, shape)
        noise = self.ops.normal(shape, self._stream(index), x, mean=1.0, stddev=np.sqrt(rate / (1.0 - rate)))
        noise = ops.where(on, noise, ops.ones_like(noise))
        self._count(index, self.ops.square_sum(noise - 1), on, shape)
        return x * noise

    def _add(self, index, rate, layer, x):
        """GaussianNoise: x + n, n ~ N(0, stddev^2) (`rate` is the stddev)."""
        shape = self.ops.shape(x)
        on = self._switch(index, shape)
        noise = self.ops.normal(shape, self._stream(index), x, stddev=rate)
        noise = ops.where(on, noise, ops.zeros_like(noise))
        self._count(index, self.ops.square_sum(noise), on, shape)
        return x + noise

    def _rnn_mask(self, index, source, step_input, part):
        shape = self.ops.shape(step_input)
        keep = self.ops.uniform(shape, self._stream(index, part), step_input) >= source.rate
        on = self._switch(index, shape)
        self._count(index, self.ops.dropped(on, keep), on, shape)
        kept = ops.cast(keep, step_input.dtype) / ops.cast(1.0 - source.rate, step_input.dtype)
        return self.ops.like(ops.where(on, kept, ops.ones_like(kept)), step_input)

    def _rnn(self, layer, name, index):
        """The RNN layer run with `training=True` (only its masks depend on it) and masks
        drawn here, one per sequence as the cell would (a list of one per gate where the
        cell asks for several)."""
        cells = rnn_cells(layer.cell)
        stems = {id(c): (name if len(cells) == 1 else f"{name}/cell_{i}") for i, c in enumerate(cells)}

        def run(proceed, *args, **kwargs):
            made = {}

            def make(cell, step_input, which):
                found = index.get(f"{stems.get(id(cell))}/{which}")
                if found is None:
                    return None
                if (id(cell), which) not in made:
                    position, source = found
                    count = getattr(cell, "dropout_mask_count", None)
                    masks = [self._rnn_mask(position, source, step_input, part) for part in range(count or 1)]
                    made[(id(cell), which)] = masks if count else masks[0]
                return made[(id(cell), which)]

            kwargs["training"] = True
            with internals.rnn_masks(make), internals.restoring_training():
                return proceed(*args, **kwargs)

        return run


class LazyTile:
    """Copies a batch `copies` times only where the copies differ: a noise source's input
    and the inputs of a layer with a noise source inside (a custom block, an RNN, a
    subclassed model) are tiled on entry, a layer meeting tiled and untiled inputs gets
    the untiled ones tiled, and the rest runs once on the batch. Inside a tiled layer
    everything is already tiled, so nothing is tiled again there. Tensors are tracked by
    identity at trace time."""

    def __init__(self, control, copies, noisy):
        self.control = control
        self.copies = copies
        self.noisy = noisy
        #: id -> tensor of every tiled tensor (kept alive: its id is not reused)
        self._tiled = {}
        self._inside = 0

    def tiled(self, t):
        if not backend.is_tensor(t) or id(t) in self._tiled:
            return t
        out = backend.tile_first(t, self.copies)
        self._tiled[id(out)] = out
        return out

    def override(self, layer, name):
        noise = self.control.override(layer, name)

        def call(proceed, *args, **kwargs):
            run = noise or (lambda p, *a, **k: p(*a, **k))
            if self._inside:
                return run(proceed, *args, **kwargs)
            tensors = [t for t in keras.tree.flatten((args, kwargs)) if backend.is_tensor(t)]
            if not self.noisy(layer) and not any(id(t) in self._tiled for t in tensors):
                return proceed(*args, **kwargs)  # upstream of every noise source: once
            args, kwargs = keras.tree.map_structure(self.tiled, (args, kwargs))
            self._inside += 1
            try:
                outputs = run(proceed, *args, **kwargs)
            finally:
                self._inside -= 1
            for t in keras.tree.flatten(outputs):
                if backend.is_tensor(t):
                    self._tiled[id(t)] = t
            return outputs

        return call
