"""What a measure family receives: its whole interface to the audit (`AuditContext`), and
the families run at one audit (`measure_families`).

A measure family (`regaudit.callbacks.families.base.Family`) reads everything it needs
from the `AuditContext` and returns rows and metrics; the audit writes them. No family
touches the callback or the probe pass.
"""

import threading
from dataclasses import dataclass

from regaudit.measures.activations import TapSummary
from regaudit.schema import COLUMNS, MODEL


@dataclass(frozen=True)
class Settings:
    """The callback arguments the families read."""

    seed: int
    mc_samples: int
    ensemble_probe_size: int
    probe_batch_size: int


class AuditContext:
    """One audit as a family sees it.

    The pass's result (`regaudit.callbacks.probe.probe_pass.PassResult`): `summaries` /
    `batchnorm`, the main probe's tap summaries and BN-input moments; `train_summaries`,
    the training probe's (when a family needs it and the main probe is the validation
    data, else None); `twin_batchnorm`, BN-input moments with every noise source on. What
    the pass found: `taps` (summarized), `all_taps` (every floating-point output),
    `noise_sources` (in call order), `reservoir_index` (tap -> reservoir positions). The
    fit: `model`, `probe` and `train_probe` (`ProbeData`), `settings`; `run_ensemble(T,
    active, probe)`, the Monte-Carlo ensemble (`EnsembleDraw`); the audit: `epoch`,
    `step`, `run_id`, `gradient_ics_due` (whether the gradient ICS runs now). `guarded`
    runs a measure under the guard of invariant 2; `row` makes a row of the tidy long
    form; `set_tags` sets run tags.
    """

    def __init__(self, *, model, probe_pass, result, settings, epoch, step, run_id,
                 guard, switched_off, set_tags, gradient_ics_due=False):
        self.model = model
        self.probe = probe_pass.probe
        self.train_probe = probe_pass.train_probe
        self.settings = settings
        self.result = result
        self.taps = probe_pass.taps
        self.all_taps = probe_pass.all_taps
        self.noise_sources = probe_pass.noise_sources
        self.reservoir_index = probe_pass.reservoir_index
        self.run_ensemble = probe_pass.run_ensemble
        self.epoch = epoch
        self.step = step
        self.gradient_ics_due = gradient_ics_due
        self.run_id = run_id
        self.set_tags = set_tags
        self._guard = guard
        self._off = switched_off
        #: results by the identity of the summaries they came from, for this audit only
        #: (the summaries live as long as the context, so no id is reused meanwhile)
        self.memo = {}

    @property
    def summaries(self):
        return self.result.summaries

    @property
    def batchnorm(self):
        return self.result.batchnorm

    @property
    def twin_batchnorm(self):
        return self.result.twin_batchnorm

    @property
    def train_summaries(self):
        return self.result.train_summaries

    def guarded(self, layer, measure, function, *args):
        """`function(*args)`, or None when it failed now or before on this layer. A
        measure of summaries already computed at this audit is not computed again (an
        inference-mode Dropout shares its input's summary object)."""
        if args and all(isinstance(a, TapSummary) for a in args):
            key = (measure, function, *map(id, args))
            if key not in self.memo:
                self.memo[key] = self._guard(layer, measure, function, *args)
            return self.memo[key] if (layer, measure) not in self._off else None
        return self._guard(layer, measure, function, *args)

    def row(self, layer, layer_class, measure, value, probe=None):
        """One row of the tidy long form (schema.COLUMNS)."""
        values = (self.run_id, self.epoch, self.step, probe or self.probe.source,
                  layer, layer_class, measure, value)
        return dict(zip(COLUMNS, values))


def measure_families(families, context, guard):
    """Every family's `guard(MODEL, name, measure, context)` result, in the families'
    order. The families that compute on the host only (`on_host`) run in one thread
    beside those that call the model: numpy's sorts and TensorFlow's kernels release the
    GIL, so the host measures overlap the dropout ensemble's passes. An exception (with
    `strict=True`) reaches the caller as if raised here."""
    on_host = [f for f in families if getattr(f, "on_host", lambda c: False)(context)]
    results, failure = {}, []

    def host():
        try:
            for family in on_host:
                results[id(family)] = guard(MODEL, family.name, family.measure, context)
        except BaseException as error:  # noqa: BLE001 - re-raised in the audit's thread
            failure.append(error)

    thread = None
    if on_host:
        thread = threading.Thread(target=host, name="regaudit-host-measures", daemon=True)
        thread.start()
    try:
        for family in families:
            if family not in on_host:
                results[id(family)] = guard(MODEL, family.name, family.measure, context)
    finally:
        # a bounded wait, again and again: Ctrl-C stops the audit within 0.1 s whichever
        # thread the OS handed SIGINT to (one long join would not wake for it)
        while thread is not None and thread.is_alive():
            thread.join(0.1)
    if failure:
        raise failure[0]
    return [results[id(family)] for family in families]
