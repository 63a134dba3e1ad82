"""One trace of the probe pass's summarizing function (`probe_pass.ProbePass._compile`): what
it records of every layer call while `graph.run_graph` walks the model in inference mode,
and the twin's walk with every noise source on. On TensorFlow, Python that runs while
the function traces, never per batch; the same on JAX (`jax.jit`, once per batch
shape); on PyTorch, the eager pass itself (`backends.torch`), its reductions on the host."""

import keras

from regaudit.measures.activations import BOUNDED_ACTIVATIONS
from regaudit.model.regularizers import is_batchnorm

from regaudit.callbacks.backends import backend
from regaudit.callbacks.probe.graph import run_graph
from regaudit.callbacks.backends.common import UNCHANGED, UNCHANGED_MARK
from regaudit.callbacks.probe.taps import NOT_SELECTED, TapInfo, activation_name, unmeasured_reason


class SummaryTrace:
    """The summaries of one batch of the probe (rows [:split]) and of the training probe
    (rows [split:], when the pass has one), keyed by tap name; `batchnorm` holds BN
    inputs' per-channel moments. Registers every tap on the pass as it meets it."""

    def __init__(self, probe_pass, inputs, start, split, exact):
        self.pass_, self.exact, self.split = probe_pass, exact, split
        self.with_train = probe_pass.train_probe is not None
        self.taps, self.train_taps, self.batchnorm, self.seen, self.cache = {}, {}, {}, {}, {}
        #: the tensors whose ids `seen` holds, alive while the trace runs (`graph`)
        self.pinned = []
        self.ops = backend.reductions
        # the probe rows of this batch (and the training probe's, which follow them)
        total = backend.rows(keras.tree.flatten(inputs)[0])
        self.batch_first = backend.batch_axis_test(total)
        self.inputs, self.start = inputs, start
        self.main_rows = backend.positions(start, split if self.with_train else total)
        self.train_rows = backend.positions(start, total - split) if self.with_train else None

    def own(self, tensor):
        """The probe's rows of a tensor (not the training probe's)."""
        return tensor[:self.split] if self.with_train else tensor

    def summarize(self, info, tensor):
        """Register a measured tap and summarize its tensor (and the training probe's)."""
        probe_pass = self.pass_
        probe_pass.layout.taps.append(info)
        same = self.seen.get((id(tensor), info.bounds))
        if same is not None:
            # Dropout (and other identities) in inference mode return their input tensor
            # itself: same values, same reservoir positions, and on the host the very
            # same summary object
            reservoir = probe_pass.reservoir.index
            reservoir.setdefault(info.name, reservoir.get(same))
            probe_pass.layout.aliases[info.name] = same
            return
        self.pinned.append(tensor)
        self.seen[(id(tensor), info.bounds)] = info.name
        self.seen[id(tensor)] = info.name
        main = self.own(tensor)
        index = len(probe_pass.taps) - 1
        positions = probe_pass.reservoir.rows(index, info.name, main, self.main_rows)
        rows = probe_pass.probe.size + (probe_pass.train_probe.size if self.with_train else 0)
        fuse = backend.fuses(tuple(tensor.shape[1:]), rows, probe_pass.planned_audits)
        if fuse:
            probe_pass.layout.fused.add(info.name)
        self.taps[info.name] = self.ops.summaries(main, positions, info.bounds, self.exact, fuse=fuse)
        if self.with_train:
            train = tensor[self.split:]
            positions = probe_pass.reservoir.rows(index, info.name, train, self.train_rows)
            self.train_taps[info.name] = self.ops.summaries(train, positions, info.bounds, self.exact,
                                                            light=True, fuse=fuse)

    def on_output(self, tap, outputs, args):
        """`run_graph`'s hook: every output of a layer call, measured or said why not."""
        probe_pass = self.pass_
        selected = probe_pass.select is None or probe_pass.select(tap.name, tap.layer)
        regularizer, noise = probe_pass.register(tap)
        if selected and is_batchnorm(tap.layer) and self.batch_first(args[0]):
            probe_pass.batchnorm_input(tap, args[0], self.seen, self.batchnorm, self.own)
        flat = keras.tree.flatten(outputs)
        for position, tensor in enumerate(flat):
            if not backend.is_tensor(tensor):
                continue
            reason = unmeasured_reason(tensor, selected, self.batch_first)
            if reason is not None and reason != NOT_SELECTED and not isinstance(
                    tap.layer, keras.layers.Layer):
                continue  # a raw op's mask or index in a Functional graph
            name = tap.name if len(flat) == 1 else f"{tap.name}.{position}"
            activation = activation_name(tap.layer)
            # the shape per sample; an output with no batch axis, whole
            shape = tuple(tensor.shape[1:] if self.batch_first(tensor) else tensor.shape)
            info = TapInfo(
                name=name, layer_class=tap.layer_class, parent=tap.parent,
                shape=shape, activation=activation,
                bounds=BOUNDED_ACTIVATIONS.get(activation), sources=tap.sources,
                layer=tap.layer, regularizer=regularizer, noise=noise, reason=reason)
            probe_pass.layout.all_taps.append(info)
            if reason is None:
                self.summarize(info, tensor)
            elif reason != NOT_SELECTED:
                probe_pass.layout.unmeasured.setdefault(reason, []).append(name)

    def twin(self, control, inference_inputs):
        """The BN inputs' moments with every noise source on (`twin.NoiseTwin`); a BN
        input the twin shares with the inference walk (`inference_inputs`: BN name -> its
        input there) is marked unchanged instead of summarized again."""
        probe_pass = self.pass_
        control.start = self.start
        moments = {}

        def on_twin_output(tap, outputs, args):
            if tap.name not in probe_pass.layout.bn_channels:
                return
            if args[0] is inference_inputs.get(tap.name):
                moments[tap.name] = self.ops.channel_moments(args[0], tap.layer.axis, UNCHANGED)
            else:
                moments[tap.name] = self.ops.channel_moments(self.own(args[0]), tap.layer.axis)

        run_graph(probe_pass.model, self.inputs, on_twin_output,
                  call_override=control.override, cache=self.cache, noisy=probe_pass.noisy)
        # a BN the twin did not call anew (inside a layer reused whole) saw no noise
        unchanged = self.ops.zero_moments({name: c for name, c in probe_pass.layout.bn_channels.items()
                                  if name not in moments}, UNCHANGED_MARK)
        return {**moments, **unchanged}
