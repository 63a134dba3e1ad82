"""What the probe pass's traces find in the model (`Layout`) and the reservoir positions
each tap keeps (`Reservoir`), held by `probe_pass.ProbePass` and filled by
`trace.SummaryTrace`."""

from dataclasses import dataclass, field

import numpy as np

from regaudit.callbacks.backends import backend


@dataclass
class Layout:
    """The layer calls one trace of the pass met, in graph order.

    `taps`: the summarized outputs (`taps.TapInfo`); `all_taps`: every floating-point
    layer output, summarized or not (the layer table, the tags); `aliases`: tap name ->
    the tap whose tensor it returned unchanged (an inference-mode Dropout);
    `batchnorm_alias`: BN name -> the tap whose per-unit sums are its input's moments;
    `noise_sources`: every noise source the model's calls bring
    (`regaudit.model.regularizers.Source`), in call order (the order of the ensemble's
    `active` and of its drop measures); `unmeasured`: {reason: [layer outputs]} not
    measured for a reason the user did not choose; `fused`: the taps whose reductions are
    XLA-fused (`backend.fuses`); `bn_channels`: BN name -> channels of its input.
    """

    taps: list = field(default_factory=list)
    all_taps: list = field(default_factory=list)
    aliases: dict = field(default_factory=dict)
    batchnorm_alias: dict = field(default_factory=dict)
    noise_sources: list = field(default_factory=list)
    unmeasured: dict = field(default_factory=dict)
    fused: set = field(default_factory=set)
    bn_channels: dict = field(default_factory=dict)

    def clear(self):
        """Before a trace (the float64 pass traces again). The lists are cleared in place:
        the twin holds `noise_sources` itself."""
        for registry in (self.taps, self.all_taps, self.noise_sources, self.unmeasured,
                         self.aliases, self.batchnorm_alias):
            registry.clear()


class Reservoir:
    """The reservoir's positions, drawn once per tap: k of each sample's values, k =
    `size` // probe size, so every audit keeps the same samples and units.

    Args:
        size: at most this many values kept per tap.
        probe_size: the probe's rows.
        batch_size: the pass's mini-batch rows.
        seed: draws the positions.
    """

    def __init__(self, size, probe_size, batch_size, seed):
        self.size = int(size)
        self.probe_size = probe_size
        self.batch_size = batch_size
        self.seed = seed
        #: tap name -> positions [probe rows, k] within each sample's values
        self.index = {}
        self._tables = {}

    def rows(self, tap_index, name, x, rows):
        """The flat positions to keep of tensor `x` (a probe mini-batch of tap `name`, the
        `tap_index`-th tap) for the probe rows `rows` of this batch, as the pass reads them
        (`backend.gather_rows`); None for a tensor with no fixed per-sample size. Stored as
        `(row % batch size) * values per sample + position`."""
        per_sample = int(np.prod(x.shape[1:])) if all(d is not None for d in x.shape[1:]) else None
        if per_sample is None or per_sample == 0:
            return None
        if name not in self.index:
            k = min(per_sample, max(1, self.size // self.probe_size))
            rng = np.random.default_rng([self.seed, tap_index])
            if k == per_sample:
                positions = np.tile(np.arange(per_sample), (self.probe_size, 1))
            else:
                positions = np.stack([np.sort(rng.choice(per_sample, k, replace=False))
                                      for _ in range(self.probe_size)])
            self.index[name] = positions
        if name not in self._tables:
            positions = self.index[name]
            flat = (np.arange(len(positions)) % self.batch_size)[:, None] * per_sample + positions
            dtype = np.int32 if flat.max(initial=0) < 2**31 - 1 else np.int64
            self._tables[name] = backend.captured_table(flat.astype(dtype))
        return backend.gather_rows(self._tables[name], rows)
