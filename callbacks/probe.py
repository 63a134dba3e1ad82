"""The probe: a fixed set of samples, and one compiled pass that summarizes every tap.

`choose_probe` picks the samples once (from `probe=`, else the validation data, else the
training data; seeded). `ProbePass` compiles one `tf.function` that runs the model in
inference mode over the probe in mini-batches through `graph.run_graph` and returns, per
tapped tensor, only summaries (`regaudit.activations.TapSummary`): exact streaming moments,
min/max, zero and non-finite counts, per-unit sums, and a fixed reservoir of at most
65,536 values whose positions are drawn once, so every audit compares the same samples
and units.
"""

import inspect
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from regaudit.activations import BOUNDED_ACTIVATIONS, RESERVOIR_SIZE, SAT_MARGIN, TapSummary
from regaudit.errors import UsageError
from regaudit.shift import ChannelMoments

from regaudit.callbacks.graph import run_graph


@dataclass
class ProbeData:
    """The probe samples: `inputs` (as the model takes them), `targets` (or None),
    `source` ("user", "val" or "train") and the indices taken from that source."""

    inputs: object
    targets: object
    source: str
    indices: np.ndarray

    @property
    def size(self):
        return int(len(keras.tree.flatten(self.inputs)[0]))


def find_fit_data(model):
    """The `x`, `y` and `validation_data` of the `model.fit` call running now, read from
    its frame: Keras 3 hands callbacks no data. After `validation_split`, `fit` has
    already replaced `x`, `y` and `validation_data` with the split parts."""
    frame = inspect.currentframe()
    try:
        while frame is not None:
            local = frame.f_locals
            if frame.f_code.co_name == "fit" and local.get("self") is model:
                return {key: local.get(key) for key in ("x", "y", "validation_data")}
            frame = frame.f_back
    finally:
        del frame
    return None


def _unpack(data):
    if isinstance(data, tuple) and len(data) in (2, 3):
        return data[0], data[1]
    if isinstance(data, tuple) and len(data) == 1:
        return data[0], None
    return data, None


def _to_numpy(structure):
    return keras.tree.map_structure(lambda a: np.asarray(a), structure)


def _collect_batches(batches, size):
    """Take batches (x, y[, w]) or x from an iterable until `size` samples are in."""
    xs, ys, count = [], [], 0
    for element in batches:
        x, y = _unpack(tuple(element) if isinstance(element, list) else element)
        xs.append(_to_numpy(x))
        ys.append(None if y is None else _to_numpy(y))
        count += len(keras.tree.flatten(xs[-1])[0])
        if count >= size:
            break
    if not xs:
        return None, None
    x = keras.tree.map_structure(lambda *parts: np.concatenate(parts), *xs)
    y = None if ys[0] is None else keras.tree.map_structure(lambda *p: np.concatenate(p), *ys)
    return x, y


def _materialize(x, y, size):
    """(inputs, targets) as numpy structures, reading at most about `size` samples of a
    dataset. Python generators are refused: reading them would steal training batches."""
    if isinstance(x, tf.data.Dataset):
        return _collect_batches(x.as_numpy_iterator(), size)
    if isinstance(x, keras.utils.PyDataset):
        return _collect_batches((x[i] for i in range(len(x))), size)
    if inspect.isgenerator(x) or (hasattr(x, "__next__") and not hasattr(x, "__len__")):
        raise UsageError(
            f"regaudit: cannot take a probe from a {type(x).__name__} without consuming "
            "training batches; pass probe=(x, y) with a few hundred samples."
        )
    return _to_numpy(x), (None if y is None else _to_numpy(y))


def choose_probe(model, probe, probe_size, seed):
    """Choose the probe set once: `probe` whole if given, else `probe_size` samples of the
    validation data of the running `fit`, else of its training data, drawn without
    replacement with `seed` (all of them when fewer exist)."""
    if probe is not None:
        x, y = _unpack(probe)
        source = "user"
    else:
        found = find_fit_data(model) or {}
        if found.get("validation_data") is not None:
            x, y = _unpack(found["validation_data"])
            source = "val"
        elif found.get("x") is not None:
            x, y, source = found["x"], found.get("y"), "train"
        else:
            raise UsageError(
                "regaudit: found no data for the probe (received no probe= and no x in "
                "model.fit); pass probe=(x, y) to the callback."
            )
    x, y = _materialize(x, y, probe_size)
    if x is None or len(keras.tree.flatten(x)[0]) == 0:
        raise UsageError(
            f"regaudit: the {source} data for the probe is empty; expected at least one "
            "sample. Pass probe=(x, y) with data."
        )
    # a probe the user passed is used whole
    return _draw(x, y, source, None if source == "user" else probe_size, seed)


def check_probe(probe):
    """Refuse a `probe=` the audit cannot use, in one line, when the callback is made."""
    x, _ = _unpack(probe)
    try:
        flat = keras.tree.flatten(x)
        size = len(flat[0]) if flat else 0
    except TypeError:
        raise UsageError(
            f"regaudit: probe= expects arrays or tensors (x, y) or x; received "
            f"{type(x).__name__}. Pass probe=(x_probe, y_probe).") from None
    if size == 0:
        raise UsageError(
            "regaudit: probe= holds no samples; expected at least one. Pass probe=(x, y) "
            "with data, or leave probe= out to draw it from fit's data.")


def choose_train_probe(model, size, seed):
    """A probe of at most `size` training samples of the running `fit` (for the
    train-vs-validation measures), or None when the training data cannot be read without
    consuming it."""
    found = find_fit_data(model) or {}
    if found.get("x") is None:
        return None
    try:
        x, y = _materialize(found["x"], found.get("y"), size)
    except UsageError:
        return None
    return _draw(x, y, "train", size, seed)


def _draw(x, y, source, size, seed):
    """ProbeData of `size` samples of (x, y) drawn without replacement with `seed`, in
    their original order (all samples when `size` is None or fewer exist)."""
    available = len(keras.tree.flatten(x)[0])
    if size is None or available <= size:
        indices = np.arange(available)
    else:
        indices = np.sort(np.random.default_rng(seed).choice(available, size=size, replace=False))
    take = lambda a: a[indices]  # noqa: E731
    targets = None if y is None else keras.tree.map_structure(take, y)
    return ProbeData(keras.tree.map_structure(take, x), targets, source, indices)


def _activation_name(layer):
    activation = getattr(layer, "activation", None)
    return getattr(activation, "__name__", None)


@dataclass
class TapInfo:
    """What the probe pass knows of one tap, for tables and `model.json`."""

    name: str
    layer_class: str
    parent: str
    shape: tuple
    activation: str | None
    bounds: tuple | None
    sources: tuple = ()
    layer: object = None


def _moments(x):
    """The exact summaries, in float64 with non-finite values left out: the fallback for
    a float32 batch `_fast_moments` cannot take and the path for float64 tensors.
    Per-unit second moments use deviations from the unit's mean, so a near-constant or
    dead unit keeps an exact, not a cancelled, variance."""
    units = x.shape[-1] if x.shape.rank and x.shape.rank > 1 else 1
    finite = tf.math.is_finite(x)
    mask = tf.reshape(finite, [-1, units])
    wide = tf.cast(tf.reshape(x, [-1, units]), tf.float64)
    wide = tf.where(mask, wide, tf.zeros_like(wide))
    n = tf.reduce_sum(tf.cast(mask, tf.float64))
    unit_count = tf.reduce_sum(tf.cast(mask, tf.float64), axis=0)
    inf = tf.fill(tf.shape(x), tf.constant(np.inf, x.dtype))
    low = tf.reduce_min(tf.where(finite, x, inf))
    high = tf.reduce_max(tf.where(finite, x, -inf))
    # a non-finite value keeps its unit alive (it is counted as non-finite instead)
    unit_maxabs = tf.reduce_max(
        tf.where(mask, tf.abs(tf.reshape(x, [-1, units])), tf.reshape(inf, [-1, units])), axis=0)
    mean = tf.reduce_sum(wide) / tf.maximum(n, 1.0)
    dev = tf.where(mask, wide - mean, tf.zeros_like(wide))
    unit_mean = tf.reduce_sum(wide, axis=0) / tf.maximum(unit_count, 1.0)
    unit_dev = tf.where(mask, wide - unit_mean, tf.zeros_like(wide))
    dev2 = dev * dev
    unit_dev_sum = tf.reduce_sum(unit_dev, axis=0)
    return {
        "finite": n,
        "mean": mean,
        "m2": tf.reduce_sum(dev2),
        "m3": tf.reduce_sum(dev2 * dev),
        "m4": tf.reduce_sum(dev2 * dev2),
        "abs_sum": tf.reduce_sum(tf.abs(wide)),
        "min": tf.cast(low, tf.float64),
        "max": tf.cast(high, tf.float64),
        "unit_finite": unit_count,
        "unit_sum": unit_dev_sum + unit_count * unit_mean,
        "unit_maxabs": tf.cast(unit_maxabs, tf.float64),
        "unit_m2": tf.maximum(
            tf.reduce_sum(unit_dev * unit_dev, axis=0)
            - unit_dev_sum * unit_dev_sum / tf.maximum(unit_count, 1.0), 0.0),
    }


def _power_of_two_scale(peak):
    """2^-e with 2^(e-1) <= peak < 2^e (e clipped to [-125, 126]), built from its
    exponent bits: multiplying by it is exact in float32 (no rounding), so scaled powers
    lose nothing and cannot overflow whatever the tensor's magnitude."""
    # a zero peak gives some clipped exponent (every deviation is 0 then); a non-finite
    # one sends the batch to the float64 fallback anyway
    exponent = tf.cast(tf.math.floor(tf.math.log(peak) * (1.0 / np.log(2.0))), tf.int32) + 1
    exponent = tf.clip_by_value(exponent, -125, 126)
    return tf.bitcast(tf.bitwise.left_shift(127 - exponent, 23), tf.float32)


def _fast_moments(x, light=False):
    """The raw material of `_moments` for a float32 tensor whose values are all finite,
    at float32 speed: deviations from a per-unit shift (the unit's float32 mean), scaled
    by a power of two that brings the tensor's largest |value| into [0.5, 1) (exact, so
    activations of 1e-20 or 1e30 are summed as accurately as activations of 1), and
    their powers in float32, summed in float32 along one short axis only (the
    second-to-last: image width, sequence length; the batch for a rank-2 tensor), then
    in float64, all sums in one stacked tensor. `central_moments` undoes the scale and
    turns them into the summaries on the host (few ops in the graph: tracing and the
    first call's graph optimisation stay quick). `light`: only what the training probe
    needs (count, mean, variance)."""
    units = x.shape[-1] if x.shape.rank and x.shape.rank > 1 else 1
    if x.shape.rank and x.shape.rank >= 3:
        w = tf.reshape(x, [-1, tf.shape(x)[-2], units])
    else:
        w = tf.reshape(x, [1, -1, units])
    # the unit's own mean as the shift keeps the shifted sums free of cancellation
    shift = tf.reduce_mean(w, axis=[0, 1])
    if light:
        extent = None
        peak = tf.reduce_max(tf.abs(w))
    else:
        extent = tf.stack([tf.reduce_min(w, axis=[0, 1]), tf.reduce_max(w, axis=[0, 1])])
        peak = tf.reduce_max(tf.abs(extent))
    scale = _power_of_two_scale(peak)
    d = (w - shift) * scale
    d2 = d * d
    parts = [d, d2]
    if not light:
        parts += [d2 * d, d2 * d2, tf.abs(w) * scale, tf.cast(tf.equal(w, 0.0), tf.float32)]
    partial = tf.stack([tf.reduce_sum(part, axis=1) for part in parts])  # [K, rows, units]
    out = {"shift": shift, "sums": tf.reduce_sum(tf.cast(partial, tf.float64), axis=1),
           "unit_n": tf.size(w) // units, "scale": scale}
    if extent is not None:
        out["extent"] = extent
    return out


def fast_path_held(values):
    """Whether a tap's `_fast_moments` output is sound: a NaN or infinity anywhere in the
    tensor (or a float32 mean that overflowed) makes its sums or its shift non-finite."""
    if "sums" not in values:
        return True
    return bool(np.isfinite(values["sums"]).all() and np.isfinite(values["shift"]).all())


def central_moments(values):
    """`_moments`' summaries from `_fast_moments`' stacked per-unit sums of powers of
    deviations from a shift c (S1..S4), of |x| and of zeros: per unit, a = S1/n is the
    mean's offset from c and M2 = S2 - n a^2, M3 = S3 - 3 a S2 + 2 n a^3,
    M4 = S4 - 4 a S3 + 6 a^2 S2 - 3 n a^4; the tensor's central moments from the units'
    by the exact grouped-moment identities (Pebay 2008) with delta_u = mean_u - mean.
    Measured against numpy float64: relative error below 1e-6 on normal, offset
    (1000 +- 0.01), ReLU, heavy-tailed and per-unit-scaled data. A light (training-probe)
    summary has no third and fourth powers: its m3, m4, zeros, min and max are NaN."""
    sums = np.asarray(values["sums"], np.float64)
    if "scale" in values:  # the sums are of powers of scaled deviations (d * scale)^p
        scale = float(values["scale"])
        powers = np.array([1, 2, 3, 4, 1, 0][: len(sums)], np.float64)
        sums = sums / scale ** powers.reshape((-1,) + (1,) * (sums.ndim - 1))
    s1, s2 = sums[0], sums[1]
    light = len(sums) == 2
    nan = np.full_like(s1, np.nan)
    s3, s4, absolute, zeros = (nan, nan, nan, nan) if light else sums[2:6]
    unit_n = np.full(s1.shape, float(values["unit_n"]))
    a = s1 / unit_n
    unit_m2 = s2 - unit_n * a * a
    unit_m3 = s3 - 3.0 * a * s2 + 2.0 * unit_n * a**3
    unit_m4 = s4 - 4.0 * a * s3 + 6.0 * a * a * s2 - 3.0 * unit_n * a**4
    unit_mean = np.asarray(values["shift"], np.float64) + a
    n = float(unit_n.sum())
    mean = float(np.sum(unit_n * unit_mean) / n)
    delta = unit_mean - mean
    extent = np.asarray(values["extent"], np.float64) if "extent" in values else np.stack([nan, nan])
    return {
        "count": n,
        "finite": n,
        "mean": mean,
        "m2": float(np.sum(unit_m2 + unit_n * delta**2)),
        "m3": float(np.sum(unit_m3 + 3.0 * delta * unit_m2 + unit_n * delta**3)),
        "m4": float(np.sum(unit_m4 + 4.0 * delta * unit_m3 + 6.0 * delta**2 * unit_m2
                           + unit_n * delta**4)),
        "abs_sum": float(np.sum(absolute)),
        "zeros": float(np.sum(zeros)),
        "min": float(extent[0].min()) if extent.size else np.nan,
        "max": float(extent[1].max()) if extent.size else np.nan,
        "unit_finite": unit_n,
        "unit_sum": unit_n * unit_mean,
        "unit_maxabs": np.maximum(np.abs(extent[0]), np.abs(extent[1])),
        "unit_m2": np.maximum(unit_m2, 0.0),
    }


def _summaries(x, reservoir_rows, bounds, exact, light=False):
    """Per-batch summaries of one tapped tensor. A float32 tensor takes `_fast_moments`
    (`fast_path_held` tells the host whether every value was finite; else it recomputes
    that batch with `exact=True`); float64 tensors always
    take the exact path. `reservoir_rows`: flat positions in this batch to keep."""
    if x.dtype not in (tf.float32, tf.float64):
        x = tf.cast(x, tf.float32)  # float16/bfloat16 (mixed precision): measure in float32
    if exact or x.dtype == tf.float64:
        out = _moments(x)
        out["count"] = tf.cast(tf.size(x), tf.float64)
        out["zeros"] = tf.cast(tf.math.count_nonzero(tf.equal(x, 0.0)), tf.float64)
        near_ok = tf.math.is_finite(x)
    else:
        out = _fast_moments(x, light)
        near_ok = True
    if reservoir_rows is not None:
        out["reservoir"] = tf.gather(tf.reshape(x, [-1]), reservoir_rows)
    if bounds is not None and not light:
        low, high = bounds
        near = near_ok & ((x <= low + SAT_MARGIN) | (x >= high - SAT_MARGIN))
        out["saturated"] = tf.cast(tf.math.count_nonzero(near), tf.float64)
    return out


#: reservoir values kept over all layers together, before the per-layer floor
RESERVOIR_BUDGET = 2**21
RESERVOIR_FLOOR = 8_192


def reservoir_size_for(model):
    """Values kept per layer: RESERVOIR_SIZE (65,536) while the layers' reservoirs fit in
    RESERVOIR_BUDGET (2M values, 32 layers), else the budget shared out, at least
    RESERVOIR_FLOOR (8,192; ResNet50: 11,915; DenseNet121: 8,192). Layers are those
    whose outputs can be measured (every layer but the Input layers). The KS statistic's
    resolution is about 1/sqrt(size): 0.004 at 65,536, 0.011 at 8,192."""
    layers = sum(1 for layer in model._flatten_layers(include_self=False)
                 if not isinstance(layer, keras.layers.InputLayer))
    return int(min(RESERVOIR_SIZE, max(RESERVOIR_FLOOR, RESERVOIR_BUDGET // max(layers, 1))))


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
    """

    def __init__(self, model, probe, batch_size=128, seed=0, reservoir_size=None,
                 train_probe=None, select=None):
        self.model = model
        self.probe = probe
        #: a second probe (training data, at most the probe's size) carried through the
        #: same calls: its rows follow the probe's in each mini-batch and get only the
        #: light summaries train-vs-validation needs (moments, reservoir)
        self.train_probe = train_probe
        self.batch_size = int(batch_size)
        self.seed = seed
        self.reservoir_size = int(reservoir_size or reservoir_size_for(model))
        self.select = select
        #: the summarized taps, in graph order
        self.taps = []
        #: every floating-point layer output, summarized or not (the layer table, the tags)
        self.all_taps = []
        self.reservoir_index = {}
        self._tables = {}
        self._ensemble = None
        #: tap name -> the tap whose tensor it returned unchanged (inference-mode Dropout)
        self.aliases = {}
        self.batchnorm_alias = {}
        self._bn_inputs = {}
        self._bn_channels = {}
        self._concrete = self._compile().get_concrete_function()
        self._exact = None  # the float64 fallback, compiled the first time a batch needs it

    @property
    def has_dropout(self):
        return bool(self.dropout_taps)

    def _signature(self):
        def spec(array):
            dtype = tf.as_dtype(array.dtype)
            return tf.TensorSpec((None,) + array.shape[1:], dtype)

        return keras.tree.map_structure(spec, self.probe.inputs)

    def _reservoir_rows(self, tap_index, x, rows):
        """Positions drawn once per tap: k of each sample's values, k = R // probe size.
        Stored as flat positions within a probe mini-batch (`(row % batch size) * values
        per sample + position`); `rows`: the probe rows of this batch."""
        per_sample = int(np.prod(x.shape[1:])) if x.shape[1:].is_fully_defined() else None
        if per_sample is None or per_sample == 0:
            return None
        name = self.taps[tap_index].name
        if name not in self.reservoir_index:
            size = self.probe.size
            k = min(per_sample, max(1, self.reservoir_size // size))
            rng = np.random.default_rng([self.seed, tap_index])
            if k == per_sample:
                positions = np.tile(np.arange(per_sample), (size, 1))
            else:
                positions = np.stack([np.sort(rng.choice(per_sample, k, replace=False)) for _ in range(size)])
            self.reservoir_index[name] = positions
        if name not in self._tables:
            positions = self.reservoir_index[name]
            flat = (np.arange(len(positions)) % self.batch_size)[:, None] * per_sample + positions
            dtype = np.int32 if flat.max(initial=0) < 2**31 - 1 else np.int64
            # an eager tensor the function captures as an input: not a large literal in
            # the graph (which graph optimisation would copy and fold at the first call),
            # and not a variable (whose creation would make tf.function trace twice)
            with tf.init_scope():
                self._tables[name] = tf.constant(flat.astype(dtype))
        return tf.reshape(tf.gather(self._tables[name], rows), [-1])

    def _compile(self, exact=False):
        """The pass: the model in inference mode with a summary of every tap and the
        moments of every BatchNormalization input; with `with_twin`, in the same call,
        the twin (`_Twin`: every Dropout always on, the other layers shared, everything
        before the first Dropout reused from the inference walk) and its BN inputs."""
        control = _Twin(self.seed)

        with_train = self.train_probe is not None

        @tf.function(
            input_signature=[self._signature(), tf.TensorSpec([], tf.int32),
                             tf.TensorSpec([], tf.bool), tf.TensorSpec([], tf.int32)],
            autograph=False,
        )
        def summarize(inputs, start, with_twin, split):
            """`inputs`: the probe's rows [:split], then the training probe's."""
            taps, train_taps, batchnorm, seen, cache = {}, {}, {}, {}, {}
            # the probe rows of this batch (and the training probe's, which follow them)
            total = tf.shape(keras.tree.flatten(inputs)[0])[0]
            main_rows = tf.range(start, start + split) if with_train else tf.range(start, start + total)
            train_rows = tf.range(start, start + total - split) if with_train else None
            own = (lambda t: t[:split]) if with_train else (lambda t: t)
            self.taps.clear()
            self.all_taps.clear()
            self.aliases.clear()
            self.batchnorm_alias.clear()

            def on_output(tap, outputs, args):
                selected = self.select is None or self.select(tap.name, tap.layer)
                if selected and _is_batchnorm(tap.layer):
                    self._batchnorm_input(tap, args[0], seen, batchnorm, own)
                flat = keras.tree.flatten(outputs)
                for position, tensor in enumerate(flat):
                    if not tensor.dtype.is_floating:
                        continue
                    name = tap.name if len(flat) == 1 else f"{tap.name}.{position}"
                    activation = _activation_name(tap.layer)
                    info = TapInfo(
                        name=name,
                        layer_class=tap.layer_class,
                        parent=tap.parent,
                        shape=tuple(tensor.shape[1:]),
                        activation=activation,
                        bounds=BOUNDED_ACTIVATIONS.get(activation),
                        sources=tap.sources,
                        layer=tap.layer,
                    )
                    self.all_taps.append(info)
                    if not selected:
                        continue
                    self.taps.append(info)
                    bounds = self.taps[-1].bounds
                    same = seen.get((id(tensor), bounds))
                    if same is not None:
                        # Dropout (and other identities) in inference mode return their
                        # input tensor itself: same values, same reservoir positions, and
                        # on the host the very same summary object
                        self.reservoir_index.setdefault(name, self.reservoir_index.get(same))
                        self.aliases[name] = same
                        continue
                    seen[(id(tensor), bounds)] = name
                    seen[id(tensor)] = name
                    main = tensor[:split] if with_train else tensor
                    positions = self._reservoir_rows(len(self.taps) - 1, main, main_rows)
                    taps[name] = _summaries(main, positions, bounds, exact)
                    if with_train:
                        train = tensor[split:]
                        positions = self._reservoir_rows(len(self.taps) - 1, train, train_rows)
                        train_taps[name] = _summaries(train, positions, bounds, exact, light=True)

            run_graph(self.model, inputs, on_output, cache=cache)
            inference_inputs = {name: id(x) for name, x in self._bn_inputs.items()}
            self._bn_inputs.clear()

            def twin():
                control.start = start
                moments = {}

                def on_twin_output(tap, outputs, args):
                    if not _is_batchnorm(tap.layer):
                        return
                    if id(args[0]) == inference_inputs.get(tap.name):
                        moments[tap.name] = _channel_moments(args[0], tap.layer.axis, _UNCHANGED)
                    else:
                        moments[tap.name] = _channel_moments(own(args[0]), tap.layer.axis)

                run_graph(self.model, inputs, on_twin_output, call_override=control.override,
                          cache=cache)
                return moments

            twin_moments = {}
            if self.has_dropout and self._bn_channels:
                twin_moments = tf.cond(with_twin, twin, lambda: _zero_moments(self._bn_channels))
            return {"taps": taps, "train_taps": train_taps, "batchnorm": batchnorm,
                    "twin_batchnorm": twin_moments}

        return summarize

    def _batchnorm_input(self, tap, x, seen, batchnorm, own):
        """A BN input's per-channel moments on the probe's rows (`own(x)`): the producing
        tap's per-unit sums when the BN normalizes the last axis of a tensor already
        summarized, else computed."""
        self._bn_inputs[tap.name] = x
        self._bn_channels[tap.name] = x.shape[tap.layer.axis]
        producer = seen.get(id(x))
        if producer is not None and tap.layer.axis % x.shape.rank == x.shape.rank - 1:
            self.batchnorm_alias[tap.name] = producer
        else:
            batchnorm[tap.name] = _channel_moments(own(x), tap.layer.axis)

    def _compile_ensemble(self):
        """Monte-Carlo dropout, batched: `replicas + 1` copies of the probe chunk, the
        first with Dropout off (the deterministic prediction, from the same batched
        computation), the others with the Dropout layers that `active` selects on.
        Copies are made lazily (`_LazyTile`): everything upstream of the first Dropout
        runs once on the chunk. Returns the flattened model outputs
        [replicas + 1, batch, ...] and, per Dropout layer, [inputs zeroed, inputs seen]."""
        control = _Twin(self.seed)
        specs = [self._signature(), tf.TensorSpec([], tf.int32), tf.TensorSpec([], tf.int32),
                 tf.TensorSpec([None], tf.float32), tf.TensorSpec([], tf.int32)]

        @tf.function(input_signature=specs, autograph=False)
        def ensemble(inputs, start, offset, active, replicas):
            batch = tf.shape(keras.tree.flatten(inputs)[0])[0]
            control.start, control.offset, control.active = start, offset, active
            control.det_rows = batch
            control.counts.clear()
            tiler = _LazyTile(control, replicas + 1)
            outputs = run_graph(self.model, inputs, lambda *a: None, call_override=tiler.override)
            flat = [
                tf.reshape(tiler.tiled(o), tf.concat([[replicas + 1, batch], tf.shape(o)[1:]], 0))
                for o in keras.tree.flatten(outputs)
            ]
            counts = [control.counts[i] for i in sorted(control.counts)]
            return {"outputs": flat, "counts": tf.stack(counts) if counts else tf.zeros([0, 2], tf.float64)}

        return ensemble

    def batches(self, probe=None):
        probe = probe or self.probe
        for start in range(0, probe.size, self.batch_size):
            chunk = keras.tree.map_structure(
                lambda a: a[start : start + self.batch_size], probe.inputs
            )
            yield chunk, tf.constant(start, tf.int32)

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
            yield main, tf.constant(start, tf.int32), tf.constant(split, tf.int32)

    def run(self, twin=False):
        """The pass over the whole probe: ({tap name: TapSummary}, {BN layer:
        ChannelMoments of its input}, {BN layer: ChannelMoments of its input with Dropout
        on} or None, {tap name: light TapSummary of the training probe} or None)."""
        summaries, train_summaries, batchnorm, twin_batchnorm, unchanged = {}, {}, {}, {}, set()
        twin = bool(twin and self.has_dropout)
        for chunk, start, split in self._chunks():
            out = self._concrete(chunk, start, tf.constant(twin), split)
            host = _tap_values(out)
            if not all(fast_path_held(v) for part in host.values() for v in part.values()):
                out = self._exact_pass()(chunk, start, tf.constant(twin), split)
                host = _tap_values(out)
            for target, key in ((summaries, "taps"), (train_summaries, "train_taps")):
                for name, values in host[key].items():
                    part = _to_summary(values)
                    target[name] = part if name not in target else target[name].merge(part)
            _merge_channels(batchnorm, out["batchnorm"])
            if twin:
                for name, values in out["twin_batchnorm"].items():
                    if np.all(values["count"].numpy() == _UNCHANGED_MARK):
                        unchanged.add(name)  # no Dropout reaches this BN input
                    else:
                        _merge_channels(twin_batchnorm, {name: values})
        for name, same in self.aliases.items():
            summaries[name] = summaries[same]
            if train_summaries:
                train_summaries[name] = train_summaries[same]
        for name, producer in self.batchnorm_alias.items():
            source = summaries[producer]
            batchnorm[name] = ChannelMoments(source.unit_finite, source.unit_sum, source.unit_m2)
        for name in unchanged:
            twin_batchnorm[name] = batchnorm[name]
        return (summaries, batchnorm, (twin_batchnorm if twin else None),
                (train_summaries if self.train_probe is not None else None))

    def _exact_pass(self):
        """The pass with every summary in float64, non-finite values left out: for a
        batch where some float32 tap holds a non-finite or huge value."""
        if self._exact is None:
            self._exact = self._compile(exact=True).get_concrete_function()
        return self._exact

    @property
    def dropout_taps(self):
        """The Dropout layers' tap names in graph order (the order of `active`), selected
        or not: the ensemble is the whole model's."""
        names, seen = [], set()
        for tap in self.all_taps:
            if _is_dropout(tap.layer) and id(tap.layer) not in seen:
                seen.add(id(tap.layer))
                names.append(tap.name)
        return names

    def run_ensemble(self, samples, active=None, probe=None, max_rows=4096):
        """(deterministic outputs, members, drop counts): per flattened model output the
        deterministic prediction [n, ...] and `samples` Monte-Carlo members [T, n, ...]
        over the probe (or `probe`, no larger); per Dropout layer [inputs zeroed, inputs
        seen]. The samples run batched, at most `max_rows` rows per call."""
        if self._ensemble is None:
            self._ensemble = self._compile_ensemble().get_concrete_function()
        layers = len(self.dropout_taps)
        active = np.ones(layers, np.float32) if active is None else np.asarray(active, np.float32)
        det, members, counts = [], [], np.zeros((layers, 2))
        for chunk, start in self.batches(probe):
            rows = len(keras.tree.flatten(chunk)[0])
            block = max(1, min(samples, max_rows // rows - 1))
            parts = []
            for offset in range(0, samples, block):
                replicas = min(block, samples - offset)
                out = self._ensemble(chunk, start, tf.constant(offset, tf.int32),
                                     tf.constant(active), tf.constant(replicas, tf.int32))
                values = [o.numpy() for o in out["outputs"]]
                if offset == 0:
                    det.append([v[0] for v in values])
                parts.append([v[1:] for v in values])
                counts += out["counts"].numpy()
            members.append([np.concatenate(p, axis=0) for p in zip(*parts)])
        det = [np.concatenate(d, axis=0) for d in zip(*det)]
        members = [np.concatenate(m, axis=1) for m in zip(*members)]
        return det, members, counts


def _tap_values(out):
    """The pass's tap summaries as numpy, converted once: {"taps"|"train_taps": {tap: {field: array}}}."""
    return {key: {name: {k: v.numpy() for k, v in values.items()} for name, values in out[key].items()}
            for key in ("taps", "train_taps")}


def _merge_channels(merged, out):
    for name, values in out.items():
        part = ChannelMoments(*(values[key].numpy() for key in ("count", "sum", "m2")))
        merged[name] = part if name not in merged else merged[name].merge(part)


def _is_batchnorm(layer):
    return isinstance(layer, keras.layers.BatchNormalization)


def _is_dropout(layer):
    return isinstance(layer, (keras.layers.Dropout, keras.layers.GaussianDropout))


_UNCHANGED = "unchanged"
#: a count no real moment can have: marks "same as the inference pass" in the twin's output
_UNCHANGED_MARK = -1.0


def _zero_moments(channels):
    return {name: {key: tf.zeros([c], tf.float64) for key in ("count", "sum", "m2")}
            for name, c in channels.items()}


def _channel_moments(x, axis, mode=None):
    """Per-channel count, sum and centred sum of squares of a BN input (finite values).
    `mode=_UNCHANGED`: the input is the inference pass's own tensor; only a marker."""
    if mode == _UNCHANGED:
        channels = x.shape[axis]
        return {"count": tf.fill([channels], tf.constant(_UNCHANGED_MARK, tf.float64)),
                "sum": tf.zeros([channels], tf.float64), "m2": tf.zeros([channels], tf.float64)}
    x = tf.cast(x, tf.float64)
    rank = x.shape.rank
    axis = axis % rank
    if axis != rank - 1:
        x = tf.transpose(x, [d for d in range(rank) if d != axis] + [axis])
    per_channel = tf.reshape(x, [-1, x.shape[-1]])
    finite = tf.math.is_finite(per_channel)
    clean = tf.where(finite, per_channel, tf.zeros_like(per_channel))
    count = tf.reduce_sum(tf.cast(finite, tf.float64), axis=0)
    total = tf.reduce_sum(clean, axis=0)
    dev = tf.where(finite, per_channel - total / tf.maximum(count, 1.0), tf.zeros_like(clean))
    return {"count": count, "sum": total, "m2": tf.reduce_sum(dev * dev, axis=0)}


def _noise_shape(layer, x):
    if hasattr(layer, "_get_noise_shape"):  # SpatialDropout1D/2D/3D: whole channels
        shape = layer._get_noise_shape(x)
    else:
        shape = getattr(layer, "noise_shape", None)
    if shape is None:
        return tf.shape(x)
    dynamic = tf.shape(x)
    return tf.stack([dynamic[i] if d is None else tf.cast(d, tf.int32) for i, d in enumerate(shape)])


class _Twin:
    """The Dropout replacements of one traced twin call: always-on inverted dropout with
    stateless masks (Dropout, SpatialDropout), or Gaussian multiplicative noise
    N(1, rate / (1 - rate)) (GaussianDropout). The masks are seeded by `seed`, the probe
    position and the replica block, so each audit draws the same masks and no seed state
    of the user's model moves.

    Set per call: `start` (probe position), `offset` (replica block), `active` (float
    per Dropout layer, in graph order: > 0 on; None: all on), `det_rows` (leading rows kept
    deterministic; None: none, and no counting). `counts` collects, per Dropout layer,
    the inputs its mask zeroed and the inputs it saw with the layer on.
    """

    def __init__(self, seed):
        self.seed = seed
        self.index = {}
        self.start = self.offset = self.active = self.det_rows = None
        self.counts = {}

    def override(self, layer):
        if not _is_dropout(layer):
            return None
        index = self.index.setdefault(id(layer), len(self.index))
        return lambda x, training=None, **kwargs: self._call(layer, index, x)

    def _call(self, layer, index, x):
        rate = float(layer.rate)
        offset = 0 if self.offset is None else tf.cast(self.offset, tf.int64)
        stream = tf.stack([
            tf.cast(self.seed, tf.int64),
            (tf.cast(self.start, tf.int64) + offset * 1_000_003) * 1000 + index,
        ])
        if isinstance(layer, keras.layers.GaussianDropout):
            shape = tf.shape(x)
            factor = tf.random.stateless_normal(
                shape, stream, mean=1.0, stddev=np.sqrt(rate / (1.0 - rate)), dtype=x.dtype)
        elif rate <= 0.0:
            shape = _noise_shape(layer, x)
            factor = tf.ones(shape, x.dtype)
        else:
            shape = _noise_shape(layer, x)
            keep = tf.random.stateless_uniform(shape, stream, dtype=tf.float32) >= rate
            factor = tf.cast(keep, x.dtype) / tf.cast(1.0 - rate, x.dtype)
        # one multiplicative factor (noise shape) carries the deterministic rows (factor 1)
        # and the on/off switch of this layer, so the full tensor is touched once
        row_shape = tf.concat([[-1], tf.ones([tf.size(shape) - 1], tf.int32)], axis=0)
        rows = tf.reshape(tf.range(shape[0]), row_shape)
        random_rows = rows >= (0 if self.det_rows is None else self.det_rows)
        on = random_rows if self.active is None else random_rows & (self.active[index] > 0)
        factor = tf.where(on, factor, tf.ones_like(factor))
        out = x * factor
        if self.det_rows is not None:  # the ensemble pass counts what each layer drops
            # on the mask (noise shape), each entry standing for size(x) / size(mask) inputs
            per_entry = tf.cast(tf.size(x), tf.float64) / tf.cast(tf.size(factor), tf.float64)
            on_entries = tf.cast(tf.math.count_nonzero(tf.broadcast_to(on, tf.shape(factor))), tf.float64)
            self.counts[index] = tf.stack([
                tf.cast(tf.math.count_nonzero(tf.equal(factor, 0)), tf.float64) * per_entry,
                on_entries * per_entry,
            ])
        return out


class _LazyTile:
    """Copies a batch `copies` times only where the copies differ: a Dropout layer's
    input is tiled before its mask (`_Twin`) is applied, a layer meeting tiled and
    untiled inputs gets the untiled ones tiled, and the rest runs once on the batch.
    Tensors are tracked by identity at trace time."""

    def __init__(self, control, copies):
        self.control = control
        self.copies = copies
        self._tiled = set()

    def _tile(self, t):
        if not tf.is_tensor(t) or id(t) in self._tiled:
            return t
        multiples = tf.concat([[self.copies], tf.ones([tf.rank(t) - 1], tf.int32)], 0)
        out = tf.tile(t, multiples)
        self._tiled.add(id(out))
        return out

    def tiled(self, t):
        return self._tile(t)

    def override(self, layer):
        dropout = self.control.override(layer)

        def call(*args, **kwargs):
            tensors = [t for t in keras.tree.flatten((args, kwargs)) if tf.is_tensor(t)]
            if dropout is None and not any(id(t) in self._tiled for t in tensors):
                return layer(*args, **kwargs)  # upstream of every Dropout: once
            args, kwargs = keras.tree.map_structure(self._tile, (args, kwargs))
            outputs = (dropout or layer)(*args, **kwargs)
            for t in keras.tree.flatten(outputs):
                if tf.is_tensor(t):
                    self._tiled.add(id(t))
            return outputs

        return call


def _to_summary(values):
    if "sums" in values:  # the fast path's per-unit sums
        values = {**values, **central_moments(values)}
    scalar = lambda key: float(values[key])  # noqa: E731
    return TapSummary(
        count=scalar("count"),
        finite=scalar("finite"),
        mean=scalar("mean"),
        m2=scalar("m2"),
        m3=scalar("m3"),
        m4=scalar("m4"),
        abs_sum=scalar("abs_sum"),
        min=scalar("min"),
        max=scalar("max"),
        zeros=scalar("zeros"),
        unit_finite=values["unit_finite"],
        unit_sum=values["unit_sum"],
        unit_maxabs=values["unit_maxabs"],
        reservoir=values.get("reservoir", np.zeros(0)),
        saturated=float(values["saturated"]) if "saturated" in values else None,
        unit_m2=values["unit_m2"],
    )
