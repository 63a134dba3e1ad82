"""The Monte-Carlo dropout ensemble over the probe: `ProbePass`'s second compiled function.

`EnsemblePass` is a part of `probe.ProbePass` (a mixin: it uses the pass's model, probe,
noise sources, seed and compilation): `replicas + 1` copies of each probe chunk run in one
call, the first with every noise source off (the deterministic prediction), the others
with the sources `active` selects drawing `twin`'s noise, copies made only from the first
noise source on (`twin.LazyTile`).
"""

import keras
import numpy as np

from regaudit.callbacks.backends import backend
from regaudit.callbacks.backends import keras_internals as internals
from regaudit.callbacks.probe.graph import run_graph
from regaudit.callbacks.probe.twin import LazyTile, noise_twin


class EnsemblePass:
    """The ensemble's compiled function and its runner, for `probe.ProbePass`."""

    def _compile_ensemble(self):
        """Monte-Carlo dropout, batched: `replicas + 1` copies of the probe chunk, the
        first with every noise source off (the deterministic prediction, from the same
        batched computation), the others with the sources that `active` selects on.
        Copies are made lazily (`twin.LazyTile`): everything upstream of the first noise
        source runs once on the chunk. Returns the flattened model outputs
        [replicas + 1, batch, ...] and, per noise source, the numerator and denominator
        of its drop measure (`NoiseTwin.counts`)."""
        control = noise_twin(self.seed, self.noise_sources)

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

    def _ensemble_specs(self):
        """(inputs, start, offset, active, replicas)."""
        return backend.signature(self.probe.inputs, ([], "int32"), ([], "int32"),
                                 ([None], "float32"), ([], "int32"))

    @property
    def dropout_taps(self):
        """The noise sources' names in call order (the order of `active`), selected or
        not: the ensemble is the whole model's."""
        return [source.name for source in self.noise_sources]

    def run_ensemble(self, samples, active=None, probe=None, max_rows=4096):
        """(deterministic outputs, members, drop counts): per flattened model output the
        deterministic prediction [n, ...] and `samples` Monte-Carlo members [T, n, ...]
        over the probe (or `probe`, no larger); per noise source the numerator and
        denominator of its drop measure (inputs zeroed and seen for a mask). The samples
        run batched, at most `max_rows` rows per call."""
        if self._ensemble is None:
            self._ensemble = self._compiled(self._compile_ensemble(), self._ensemble_specs, static=(3,))
        layers = len(self.dropout_taps)
        active = np.ones(layers, np.float32) if active is None else np.asarray(active, np.float32)
        det, members, counts, masks = [], [], np.zeros((layers, 2)), []
        for chunk, start in self.batches(probe):
            rows = len(keras.tree.flatten(chunk)[0])
            block = max(1, min(samples, max_rows // rows - 1))
            parts = []
            for offset in range(0, samples, block):
                replicas = min(block, samples - offset)
                out = self._ensemble(chunk, start, backend.constant(offset, "int32"),
                                     backend.constant(active, "float32"),
                                     backend.constant(replicas, "int32"))
                values = [backend.host(o) for o in out["outputs"]]
                if offset == 0:
                    det.append([v[0] for v in values])
                    masks.append([backend.host(m) for m in out["masks"]])
                parts.append([v[1:] for v in values])
                counts += backend.host(out["counts"])
            members.append([np.concatenate(p, axis=0) for p in zip(*parts)])
        det = [np.concatenate(d, axis=0) for d in zip(*det)]
        members = [np.concatenate(m, axis=1) for m in zip(*members)]
        #: per flattened output, the Keras mask of these rows (False at padding
        #: positions: `Embedding(mask_zero=True)` and the layers it flows through), or
        #: None where the output carries none
        self.output_masks = [None if parts[0].size == 0 else np.concatenate(parts, axis=0)
                             for parts in zip(*masks)]
        return det, members, counts


def _output_mask(output, batch):
    """The Keras mask of a model output's first `batch` rows (the deterministic copy), or
    an empty tensor when it carries none."""
    mask = internals.get_keras_mask(output)
    if mask is None:
        return keras.ops.zeros([0], "bool")
    return keras.ops.cast(mask, "bool")[:batch]
