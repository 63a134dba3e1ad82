"""The Monte-Carlo dropout ensemble over the probe: `ProbePass`'s second compiled function.

`EnsemblePass` (held by `probe_pass.ProbePass`, which hands it the model, the seed, the
noise sources its traces find and its `noisy` test): `replicas + 1` copies of each probe
chunk run in one call, the first with every noise source off (the deterministic
prediction), the others with the sources `active` selects drawing `twin`'s noise, copies
made only from the first noise source on (`twin.LazyTile`).
"""

from typing import NamedTuple

import keras
import numpy as np

from regaudit.callbacks.backends import backend
from regaudit.callbacks.backends import keras_internals as internals
from regaudit.callbacks.probe.graph import run_graph
from regaudit.callbacks.probe.twin import LazyTile, NoiseTwin


class EnsembleDraw(NamedTuple):
    """One run of the ensemble (`EnsemblePass.run`), per flattened model output."""

    #: the deterministic prediction [n, ...]
    outputs: list
    #: the Monte-Carlo members [T, n, ...]
    members: list
    #: per noise source, the numerator and denominator of its drop measure (inputs zeroed
    #: and seen for a mask) [sources, 2]
    counts: np.ndarray
    #: the Keras mask of these rows (False at padding positions: `Embedding(mask_zero=True)`
    #: and the layers it flows through), or None where the output carries none
    masks: list


class EnsemblePass:
    """The ensemble's compiled function and its runner.

    Args:
        model: the built Keras model.
        seed: the audit seed (the twin's draws).
        noise_sources: the model's noise sources in call order, as the probe pass's traces
            fill them (the order of `active`).
        noisy: whether a noise source sits in a layer (`ProbePass.noisy`).
        batch_size: probe rows per call.
    """

    def __init__(self, model, seed, noise_sources, noisy, batch_size):
        self.model = model
        self.seed = seed
        self.noise_sources = noise_sources
        self.noisy = noisy
        self.batch_size = batch_size
        self._compiled = None

    def _compile_ensemble(self):
        """Monte-Carlo dropout, batched: `replicas + 1` copies of the probe chunk, the
        first with every noise source off (the deterministic prediction, from the same
        batched computation), the others with the sources that `active` selects on.
        Copies are made lazily (`twin.LazyTile`): everything upstream of the first noise
        source runs once on the chunk. Returns the flattened model outputs
        [replicas + 1, batch, ...] and, per noise source, the numerator and denominator
        of its drop measure (`NoiseTwin.counts`)."""
        control = NoiseTwin(self.seed, self.noise_sources)

        def ensemble(inputs, start, offset, active, replicas):
            batch = backend.rows(keras.tree.flatten(inputs)[0])
            control.start, control.offset, control.active = start, offset, active
            control.det_rows = batch
            control.counts.clear()
            tiler = LazyTile(control, replicas + 1, self.noisy)
            outputs = run_graph(self.model, inputs, lambda *a: None, call_override=tiler.override,
                                noisy=self.noisy)
            flat = [backend.by_replica(tiler.tiled(o), replicas + 1, batch)
                    for o in keras.tree.flatten(outputs)]
            counts = [control.counts.get(i, backend.zeros64([2])) for i in range(len(self.noise_sources))]
            return {"outputs": flat, "counts": backend.stack(counts) if counts else backend.zeros64([0, 2]),
                    "masks": [_output_mask(o, batch) for o in keras.tree.flatten(outputs)]}

        return ensemble

    def _specs(self, probe):
        """(inputs, start, offset, active, replicas)."""
        return backend.signature(probe.inputs, ([], "int32"), ([], "int32"),
                                 ([None], "float32"), ([], "int32"))

    def _batches(self, probe):
        for start in range(0, probe.size, self.batch_size):
            chunk = keras.tree.map_structure(lambda a: a[start : start + self.batch_size], probe.inputs)
            yield chunk, backend.constant(start, "int32")

    def run(self, probe, samples, active=None, max_rows=4096):
        """The ensemble over `probe` as an `EnsembleDraw`: per flattened model output the
        deterministic prediction and `samples` Monte-Carlo members, per noise source its
        drop counts (`active`: a float per source, > 0 on; None: all on). The samples run
        batched, at most `max_rows` rows per call."""
        if self._compiled is None:
            self._compiled = backend.compiled(self._compile_ensemble(), lambda: self._specs(probe),
                                              self.model.variables, static=(3,))
        layers = len(self.noise_sources)
        active = np.ones(layers, np.float32) if active is None else np.asarray(active, np.float32)
        det, members, counts, masks = [], [], np.zeros((layers, 2)), []
        for chunk, start in self._batches(probe):
            rows = len(keras.tree.flatten(chunk)[0])
            block = max(1, min(samples, max_rows // rows - 1))
            parts = []
            for offset in range(0, samples, block):
                replicas = min(block, samples - offset)
                out = self._compiled(chunk, start, backend.constant(offset, "int32"),
                                     backend.constant(active, "float32"),
                                     backend.constant(replicas, "int32"))
                values = [backend.host(o) for o in out["outputs"]]
                if offset == 0:
                    det.append([v[0] for v in values])
                    masks.append([backend.host(m) for m in out["masks"]])
                parts.append([v[1:] for v in values])
                counts += backend.host(out["counts"])
            members.append([np.concatenate(p, axis=0) for p in zip(*parts)])
        return EnsembleDraw(
            [np.concatenate(d, axis=0) for d in zip(*det)],
            [np.concatenate(m, axis=1) for m in zip(*members)], counts,
            [None if parts[0].size == 0 else np.concatenate(parts, axis=0) for parts in zip(*masks)])


def _output_mask(output, batch):
    """The Keras mask of a model output's first `batch` rows (the deterministic copy), or
    an empty tensor when it carries none."""
    mask = internals.get_keras_mask(output)
    if mask is None:
        return keras.ops.zeros([0], "bool")
    return keras.ops.cast(mask, "bool")[:batch]
