"""The compiled passes over the probe: summaries of every layer call, the twin, the ensemble.

`ProbePass` compiles one function (`tf.function`, `jax.jit`; on PyTorch an eager pass
reduced on the host: `regaudit.callbacks.backends`) that runs the model in inference mode over the
probe (`choice`) in mini-batches through `graph.run_graph`, which sees every layer
call, nested ones included, and returns per tapped tensor only summaries
(`backend.reductions`: `tensorflow_reductions`, `jax_reductions`, `host_reductions`): exact streaming moments, min/max, zero and non-finite counts, per-unit
sums, and a fixed reservoir of at most 65,536 values whose positions are drawn once, so
every audit compares the same samples and units. In the same call, the twin (`twin`:
every noise source on, BatchNormalization in inference mode) gives the BN inputs'
moments with the noise on; a second function samples the Monte-Carlo dropout ensemble
(`probe_ensemble`).
"""

from typing import NamedTuple

import keras
import numpy as np

from regaudit.model.regularizers import regularizer_of, sources_of
from regaudit.measures.shift import ChannelMoments

from regaudit.callbacks.backends import backend


from regaudit.callbacks.backends import keras_internals as internals
from regaudit.callbacks.probe.graph import run_graph
from regaudit.callbacks.probe.ensemble_pass import EnsemblePass
from regaudit.callbacks.probe.stochastic import drawing_generators, stochastic_layers
from regaudit.callbacks.probe.trace import SummaryTrace
from regaudit.callbacks.probe.summaries import fast_path_held, merge_channels, to_summary
from regaudit.callbacks.probe.stochastic import kept_seed_state
from regaudit.callbacks.probe.taps import reservoir_size_for
from regaudit.callbacks.probe.twin import NoiseTwin
from regaudit.callbacks.probe.layout import Layout, Reservoir
from regaudit.callbacks.backends.common import UNCHANGED_MARK


class PassResult(NamedTuple):
    """One run of the probe pass: what an audit measures."""

    #: {tap name: `regaudit.measures.activations.TapSummary`} of the probe
    summaries: dict
    #: {BN layer: `regaudit.measures.shift.ChannelMoments` of its input}
    batchnorm: dict
    #: the same with every noise source on (the twin), or None when not asked for
    twin_batchnorm: dict | None
    #: {tap name: light TapSummary} of the training probe, or None without one
    train_summaries: dict | None


class ProbePass:
    """One compiled function over the probe that returns summaries for every tap.

    Args:
        model: a built Keras model.
        probe: the `ProbeData`.
        batch_size: probe samples per mini-batch; bounds the memory of one audit. 128.
        seed: draws the reservoir positions once. 0.
        reservoir_size: at most this many values kept per tap. None: `reservoir_size_for`
            the model (65,536 up to 32 layers, fewer beyond: the host-side cost of the
            quantiles, drift and KS measures grows with the values kept).
        train_probe: a `ProbeData` of training samples, no larger than `probe`, measured
            in the same calls (light summaries). None.
        select: `LayerSelection` of the taps to summarize (the model still runs whole);
            None: every tap.
        planned_audits: the audits the fit will run, when known: the taps whose
            reductions see enough values over them are XLA-fused (`backend.fuses`).
            None: none is.
        twin: whether the audits will ask for the twin (`run(twin=True)`): on JAX and
            PyTorch the set-up runs the pass once, and on JAX that compiles the variant
            the audits will call. False.
    """

    def __init__(self, model, probe, batch_size=128, seed=0, reservoir_size=None,
                 train_probe=None, select=None, planned_audits=None, twin=False):
        self.model = model
        self.probe = probe
        #: a second probe (training data, at most the probe's size) carried through the
        #: same calls: its rows follow the probe's in each mini-batch and get only the
        #: light summaries train-vs-validation needs (moments, reservoir)
        self.train_probe = train_probe
        self.batch_size = int(batch_size)
        self.seed = seed
        self.select = select
        self.planned_audits = planned_audits
        #: what the traces found: taps, noise sources, aliases, unmeasured outputs
        self.layout = Layout()
        self.reservoir = Reservoir(reservoir_size or reservoir_size_for(model), probe.size,
                                   self.batch_size, seed)
        #: the BN inputs of the trace running now (the twin reuses the ones it shares)
        self.bn_inputs = {}
        self._noisy = {}
        drawn = set()
        with drawing_generators(drawn):
            self._concrete = self._compiled(self._compile(), self._specs, static=(1, 2))
            if backend.RUNS_PASS_AT_SETUP:  # the taps are met by running the pass once
                with kept_seed_state(model):
                    self._concrete(*next(self._chunks()), bool(twin))
        #: the layer calls that draw random numbers in inference (`stochastic`): every
        #: prediction differs; the audit keeps their seed state (`kept_seed_state`)
        owners = {id(layer) for layer in stochastic_layers(model, drawn)}
        self.stochastic = [tap.name for tap in self.all_taps if id(tap.layer) in owners]
        self._exact = None  # the float64 fallback, compiled the first time a batch needs it
        #: the Monte-Carlo dropout ensemble over the probe, compiled at its first run
        self.ensemble = EnsemblePass(model, seed, self.layout.noise_sources, self.noisy, self.batch_size)

    # what the traces found (`Layout`), as the pass's own names

    @property
    def taps(self):
        """The summarized taps (`taps.TapInfo`), in graph order."""
        return self.layout.taps

    @property
    def all_taps(self):
        """Every floating-point layer output, summarized or not (the layer table, the tags)."""
        return self.layout.all_taps

    @property
    def noise_sources(self):
        """Every noise source of the model's calls, in call order (`Layout`)."""
        return self.layout.noise_sources

    @property
    def unmeasured(self):
        """{reason: [layer outputs]} not measured for a reason the user did not choose."""
        return self.layout.unmeasured

    @property
    def aliases(self):
        """Tap name -> the tap whose tensor it returned unchanged (inference-mode Dropout)."""
        return self.layout.aliases

    @property
    def fused(self):
        """The taps whose reductions are XLA-fused (`backend.fuses`)."""
        return self.layout.fused

    @property
    def reservoir_index(self):
        """Tap name -> its reservoir positions [probe rows, k] (`Reservoir.index`)."""
        return self.reservoir.index

    @property
    def reservoir_size(self):
        return self.reservoir.size

    @property
    def dropout_taps(self):
        """The noise sources' names in call order (the order of `active`), selected or
        not: the ensemble is the whole model's."""
        return [source.name for source in self.noise_sources]

    def run_ensemble(self, samples, active=None, probe=None, max_rows=4096):
        """`EnsemblePass.run` over this pass's probe (or `probe`, no larger)."""
        return self.ensemble.run(probe or self.probe, samples, active, max_rows)

    def _compiled(self, function, specs, static):
        """`backend.compiled` over this model's variables; `static`: the positions of the
        arguments after the inputs that fix a compilation on JAX."""
        return backend.compiled(function, specs, self.model.variables, static)

    @property
    def has_dropout(self):
        return bool(self.noise_sources)

    def noisy(self, layer):
        """Whether a noise source sits in `layer` or anywhere inside it."""
        key = id(layer)
        if key not in self._noisy:
            parents = [(layer, None)] + [(sub, None) for sub in internals.sublayers(layer)]
            self._noisy[key] = any(sources_of(sub, "", parent) for sub, parent in parents)
        return self._noisy[key]

    def register(self, tap):
        """The tap's regularizer and noise sources, once per call name."""
        noise = tuple(sources_of(tap.layer, tap.name, tap.parent_layer))
        known = {source.name for source in self.noise_sources}
        self.noise_sources.extend(source for source in noise if source.name not in known)
        return regularizer_of(tap.layer, tap.parent_layer), noise

    def _specs(self):
        """The pass's input signature on TensorFlow: (inputs, start, split, with_twin)."""
        return backend.signature(self.probe.inputs, ([], "int32"), ([], "int32"), ([], "bool"))

    def _compile(self, exact=False):
        """The pass: the model in inference mode with a summary of every tap and the
        moments of every BatchNormalization input; with `with_twin`, in the same call,
        the twin (`twin.NoiseTwin`: every noise source on, the other layers shared,
        everything before the first noise source reused from the inference walk) and its
        BN inputs. What one trace records is `trace.SummaryTrace`."""
        control = NoiseTwin(self.seed, self.noise_sources)

        def summarize(inputs, start, split, with_twin):
            """`inputs`: the probe's rows [:split], then the training probe's."""
            self.layout.clear()  # the float64 pass traces again
            trace = SummaryTrace(self, inputs, start, split, exact)
            run_graph(self.model, inputs, trace.on_output, cache=trace.cache, noisy=self.noisy)
            inference_inputs = dict(self.bn_inputs)
            self.bn_inputs.clear()
            twin_moments = {}
            channels = self.layout.bn_channels
            if self.has_dropout and channels:
                twin_moments = backend.cond(
                    with_twin, lambda: trace.twin(control, inference_inputs),
                    lambda: backend.reductions.zero_moments(channels))
            return {"taps": trace.taps, "train_taps": trace.train_taps,
                    "batchnorm": trace.batchnorm, "twin_batchnorm": twin_moments}

        return summarize

    def batchnorm_input(self, tap, x, seen, batchnorm, own):
        """A BN input's per-channel moments on the probe's rows (`own(x)`): the producing
        tap's per-unit sums when the BN normalizes the last axis of a tensor already
        summarized, else computed."""
        self.bn_inputs[tap.name] = x
        self.layout.bn_channels[tap.name] = x.shape[tap.layer.axis]
        producer = seen.get(id(x))
        rank = len(x.shape)
        if producer is not None and tap.layer.axis % rank == rank - 1:
            self.layout.batchnorm_alias[tap.name] = producer
        else:
            batchnorm[tap.name] = backend.reductions.channel_moments(own(x), tap.layer.axis)

    def _chunks(self):
        """(inputs, start, split) per mini-batch: the probe's rows, then as many of the
        training probe's at the same positions."""
        for start in range(0, self.probe.size, self.batch_size):
            stop = start + self.batch_size
            main = keras.tree.map_structure(lambda a: a[start:stop], self.probe.inputs)
            split = len(keras.tree.flatten(main)[0])
            if self.train_probe is not None:
                train = keras.tree.map_structure(lambda a: a[start:stop], self.train_probe.inputs)
                main = keras.tree.map_structure(lambda a, b: np.concatenate([a, b]), main, train)
            yield main, backend.constant(start, "int32"), backend.constant(split, "int32")

    def run(self, twin=False):
        """The pass over the whole probe, as a `PassResult`; `twin`: with the BN inputs'
        moments with every noise source on."""
        summaries, train_summaries, batchnorm, twin_batchnorm, unchanged = {}, {}, {}, {}, set()
        # the compiled pass is asked as the caller asks (one JAX compilation per value);
        # without a noise source it computes no twin either way
        with_twin = backend.constant(bool(twin), "bool")
        twin = bool(twin and self.has_dropout)
        for chunk, start, split in self._chunks():
            out = self._concrete(chunk, start, split, with_twin)
            host = _tap_values(out)
            if not all(fast_path_held(v) for part in host.values() for v in part.values()):
                out = self._exact_pass()(chunk, start, split, with_twin)
                host = _tap_values(out)
            for target, key in ((summaries, "taps"), (train_summaries, "train_taps")):
                for name, values in host[key].items():
                    part = to_summary(values)
                    target[name] = part if name not in target else target[name].merge(part)
            merge_channels(batchnorm, out["batchnorm"])
            if twin:
                for name, values in out["twin_batchnorm"].items():
                    if np.all(backend.host(values["count"]) == UNCHANGED_MARK):
                        unchanged.add(name)  # no noise reaches this BN input
                    else:
                        merge_channels(twin_batchnorm, {name: values})
        for name, same in self.aliases.items():
            summaries[name] = summaries[same]
            if train_summaries:
                train_summaries[name] = train_summaries[same]
        for name, producer in self.layout.batchnorm_alias.items():
            source = summaries[producer]
            batchnorm[name] = ChannelMoments(source.unit_finite, source.unit_sum, source.unit_m2)
        for name in unchanged:
            twin_batchnorm[name] = batchnorm[name]
        return PassResult(summaries, batchnorm, twin_batchnorm if twin else None,
                          train_summaries if self.train_probe is not None else None)

    def _exact_pass(self):
        """The pass with every summary in float64, non-finite values left out: for a
        batch where some float32 tap holds a non-finite or huge value."""
        if self._exact is None:
            self._exact = self._compiled(self._compile(exact=True), self._specs, static=(1, 2))
        return self._exact

def _tap_values(out):
    """The pass's tap summaries as numpy, converted once: {"taps"|"train_taps": {tap: {field: array}}}."""
    return {key: {name: {k: backend.host(v) for k, v in values.items()} for name, values in out[key].items()}
            for key in ("taps", "train_taps")}


