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
    available = len(keras.tree.flatten(x)[0])
    rng = np.random.default_rng(seed)
    if available > probe_size and source != "user":
        indices = np.sort(rng.choice(available, size=probe_size, replace=False))
    else:
        indices = np.arange(available)  # a probe the user passed is used whole
    take = lambda a: a[indices]  # noqa: E731
    targets = None if y is None else keras.tree.map_structure(take, y)
    return ProbeData(keras.tree.map_structure(take, x), targets, source, indices)


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
    available = len(keras.tree.flatten(x)[0])
    rng = np.random.default_rng(seed)
    indices = np.sort(rng.choice(available, size=min(size, available), replace=False))
    take = lambda a: a[indices]  # noqa: E731
    targets = None if y is None else keras.tree.map_structure(take, y)
    return ProbeData(keras.tree.map_structure(take, x), targets, "train", indices)


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


def _moments(x, finite=None):
    """Per-batch summaries in float64. `finite` is None when every value is finite (the
    fast path: no masking); else the mask, and non-finite values are left out."""
    flat = tf.reshape(tf.cast(x, tf.float64), [-1])
    units = x.shape[-1] if x.shape.rank and x.shape.rank > 1 else 1
    per_unit = tf.reshape(x, [-1, units])
    abs_unit = tf.abs(per_unit)
    if finite is None:
        n = tf.cast(tf.size(flat), tf.float64)
        clean, clean_unit = flat, per_unit
        low, high = tf.reduce_min(x), tf.reduce_max(x)
        unit_finite = tf.fill([units], tf.cast(tf.shape(per_unit)[0], tf.float64))
        unit_maxabs = tf.reduce_max(abs_unit, axis=0)
        dev = flat - tf.reduce_sum(flat) / n
        unit_dev = tf.cast(per_unit, tf.float64) - tf.reduce_sum(
            tf.cast(per_unit, tf.float64), axis=0) / unit_finite
    else:
        mask = tf.reshape(finite, [-1])
        unit_mask = tf.reshape(finite, [-1, units])
        n = tf.reduce_sum(tf.cast(mask, tf.float64))
        clean = tf.where(mask, flat, tf.zeros_like(flat))
        clean_unit = tf.where(unit_mask, per_unit, tf.zeros_like(per_unit))
        inf = tf.fill(tf.shape(x), tf.constant(np.inf, x.dtype))
        low = tf.reduce_min(tf.where(finite, x, inf))
        high = tf.reduce_max(tf.where(finite, x, -inf))
        unit_finite = tf.reduce_sum(tf.cast(unit_mask, tf.float64), axis=0)
        # a non-finite value keeps its unit alive (it is counted as non-finite instead)
        unit_maxabs = tf.reduce_max(tf.where(unit_mask, abs_unit, tf.reshape(inf, [-1, units])), axis=0)
        dev = tf.where(mask, flat - tf.reduce_sum(clean) / tf.maximum(n, 1.0), tf.zeros_like(flat))
        clean64 = tf.cast(clean_unit, tf.float64)
        unit_mean = tf.reduce_sum(clean64, axis=0) / tf.maximum(unit_finite, 1.0)
        unit_dev = tf.where(unit_mask, clean64 - unit_mean, tf.zeros_like(clean64))
    dev2 = dev * dev
    return {
        "finite": n,
        "mean": tf.reduce_sum(clean) / tf.maximum(n, 1.0),
        "m2": tf.reduce_sum(dev2),
        "m3": tf.reduce_sum(dev2 * dev),
        "m4": tf.reduce_sum(dev2 * dev2),
        "abs_sum": tf.reduce_sum(tf.abs(clean)),
        "min": tf.cast(low, tf.float64),
        "max": tf.cast(high, tf.float64),
        "unit_finite": unit_finite,
        "unit_sum": tf.reduce_sum(tf.cast(clean_unit, tf.float64), axis=0),
        "unit_maxabs": tf.cast(unit_maxabs, tf.float64),
        "unit_m2": tf.reduce_sum(unit_dev * unit_dev, axis=0),
    }


def _summaries(x, reservoir_rows, bounds):
    """Per-batch summaries of one tapped tensor (float64 sums on the graph)."""
    if x.dtype not in (tf.float32, tf.float64):
        x = tf.cast(x, tf.float32)  # float16/bfloat16 (mixed precision): measure in float32
    finite = tf.math.is_finite(x)
    out = tf.cond(
        tf.reduce_all(finite), lambda: _moments(x), lambda: _moments(x, finite)
    )
    out["count"] = tf.cast(tf.size(x), tf.float64)
    out["zeros"] = tf.cast(tf.math.count_nonzero(tf.equal(x, 0.0)), tf.float64)
    if reservoir_rows is not None:
        per_sample = tf.reshape(x, [tf.shape(x)[0], -1])
        out["reservoir"] = tf.reshape(tf.gather(per_sample, reservoir_rows, batch_dims=1), [-1])
    if bounds is not None:
        low, high = bounds
        near = (x <= low + SAT_MARGIN) | (x >= high - SAT_MARGIN)
        out["saturated"] = tf.cast(tf.math.count_nonzero(finite & near), tf.float64)
    return out


class ProbePass:
    """One compiled function over the probe that returns summaries for every tap.

    Args:
        model: a built Keras model.
        probe: the `ProbeData`.
        batch_size: probe samples per mini-batch; bounds the memory of one audit. 128.
        seed: draws the reservoir positions once. 0.
        reservoir_size: at most this many values kept per tap. 65,536.
    """

    def __init__(self, model, probe, batch_size=128, seed=0, reservoir_size=RESERVOIR_SIZE):
        self.model = model
        self.probe = probe
        self.batch_size = int(batch_size)
        self.seed = seed
        self.reservoir_size = int(reservoir_size)
        self.taps = []
        self.reservoir_index = {}
        self._twin = None
        self._twin_start = None
        self._function = self._compile()
        self._concrete = self._function.get_concrete_function()

    @property
    def has_dropout(self):
        return any(_is_dropout(tap.layer) for tap in self.taps)

    def _signature(self):
        def spec(array):
            dtype = tf.as_dtype(array.dtype)
            return tf.TensorSpec((None,) + array.shape[1:], dtype)

        return keras.tree.map_structure(spec, self.probe.inputs)

    def _reservoir_rows(self, tap_index, x, start):
        """Positions drawn once per tap: k of each sample's values, k = R // probe size."""
        per_sample = int(np.prod(x.shape[1:])) if x.shape[1:].is_fully_defined() else None
        if per_sample is None or per_sample == 0:
            return None
        name = self.taps[tap_index].name
        if name not in self.reservoir_index:
            size = self.probe.size
            k = min(per_sample, max(1, self.reservoir_size // size))
            rng = np.random.default_rng([self.seed, tap_index])
            if k == per_sample:
                rows = np.tile(np.arange(per_sample), (size, 1))
            else:
                rows = np.stack([np.sort(rng.choice(per_sample, k, replace=False)) for _ in range(size)])
            self.reservoir_index[name] = rows
        # a constant of this trace's graph: a retrace must not reuse another graph's tensor
        table = tf.constant(self.reservoir_index[name], dtype=tf.int64)
        return table[start : start + tf.shape(x)[0]]

    def _compile(self):
        @tf.function(
            input_signature=[self._signature(), tf.TensorSpec([], tf.int32)], autograph=False
        )
        def summarize(inputs, start):
            taps, batchnorm, seen = {}, {}, {}
            self.taps.clear()

            def on_output(tap, outputs, args):
                if _is_batchnorm(tap.layer):
                    batchnorm[tap.name] = _channel_moments(args[0], tap.layer.axis)
                flat = keras.tree.flatten(outputs)
                for position, tensor in enumerate(flat):
                    if not tensor.dtype.is_floating:
                        continue
                    name = tap.name if len(flat) == 1 else f"{tap.name}.{position}"
                    activation = _activation_name(tap.layer)
                    self.taps.append(TapInfo(
                        name=name,
                        layer_class=tap.layer_class,
                        parent=tap.parent,
                        shape=tuple(tensor.shape[1:]),
                        activation=activation,
                        bounds=BOUNDED_ACTIVATIONS.get(activation),
                        sources=tap.sources,
                        layer=tap.layer,
                    ))
                    bounds = self.taps[-1].bounds
                    same = seen.get((id(tensor), bounds))
                    if same is not None:
                        # Dropout (and other identities) in inference mode return their
                        # input tensor itself: same values, same reservoir positions
                        self.reservoir_index.setdefault(name, self.reservoir_index.get(same))
                        taps[name] = dict(taps[same])
                        continue
                    seen[(id(tensor), bounds)] = name
                    rows = self._reservoir_rows(len(self.taps) - 1, tensor, start)
                    taps[name] = _summaries(tensor, rows, bounds)

            run_graph(self.model, inputs, on_output)
            return {"taps": taps, "batchnorm": batchnorm}

        return summarize

    def _compile_twin(self):
        """The twin: the same layer objects, every Dropout always on (stateless masks
        seeded by the probe position, so each audit draws the same masks and no seed
        state of the model moves), everything else in inference mode."""
        dropouts = {}

        def override(layer):
            if not _is_dropout(layer):
                return None
            index = dropouts.setdefault(id(layer), len(dropouts))
            return _always_on(layer, self.seed, index, self._twin_start)

        @tf.function(
            input_signature=[self._signature(), tf.TensorSpec([], tf.int32)], autograph=False
        )
        def twin(inputs, start):
            self._twin_start = start
            batchnorm = {}

            def on_output(tap, outputs, args):
                if _is_batchnorm(tap.layer):
                    batchnorm[tap.name] = _channel_moments(args[0], tap.layer.axis)

            run_graph(self.model, inputs, on_output, call_override=override)
            return {"batchnorm": batchnorm}

        return twin

    def batches(self, probe=None):
        probe = probe or self.probe
        for start in range(0, probe.size, self.batch_size):
            chunk = keras.tree.map_structure(
                lambda a: a[start : start + self.batch_size], probe.inputs
            )
            yield chunk, tf.constant(start, tf.int32)

    def run(self, probe=None):
        """The pass over the whole probe (or another probe no larger than it):
        ({tap name: TapSummary}, {BatchNormalization layer: ChannelMoments of its input})."""
        summaries, batchnorm = {}, {}
        for chunk, start in self.batches(probe):
            out = self._concrete(chunk, start)
            for name, values in out["taps"].items():
                part = _to_summary({key: value.numpy() for key, value in values.items()})
                summaries[name] = part if name not in summaries else summaries[name].merge(part)
            _merge_channels(batchnorm, out["batchnorm"])
        return summaries, batchnorm

    def run_twin(self, probe=None):
        """{BatchNormalization layer: ChannelMoments of its input} with Dropout on."""
        if self._twin is None:
            self._twin = self._compile_twin().get_concrete_function()
        batchnorm = {}
        for chunk, start in self.batches(probe):
            _merge_channels(batchnorm, self._twin(chunk, start)["batchnorm"])
        return batchnorm


def _merge_channels(merged, out):
    for name, values in out.items():
        part = ChannelMoments(*(values[key].numpy() for key in ("count", "sum", "m2")))
        merged[name] = part if name not in merged else merged[name].merge(part)


def _is_batchnorm(layer):
    return isinstance(layer, keras.layers.BatchNormalization)


def _is_dropout(layer):
    return isinstance(layer, (keras.layers.Dropout, keras.layers.GaussianDropout))


def _channel_moments(x, axis):
    """Per-channel count, sum and centred sum of squares of a BN input (finite values)."""
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


def _always_on(layer, seed, index, start):
    """Inverted dropout with a stateless mask (Dropout, SpatialDropout), or Gaussian
    multiplicative noise N(1, rate / (1 - rate)) (GaussianDropout)."""
    rate = float(layer.rate)

    def call(x, training=None, **kwargs):
        stream = tf.stack([tf.cast(seed, tf.int64), tf.cast(start, tf.int64) * 1000 + index])
        if isinstance(layer, keras.layers.GaussianDropout):
            noise = tf.random.stateless_normal(
                tf.shape(x), stream, mean=1.0, stddev=np.sqrt(rate / (1.0 - rate)), dtype=x.dtype)
            return x * noise
        if rate <= 0.0:
            return x
        keep = tf.random.stateless_uniform(_noise_shape(layer, x), stream, dtype=tf.float32) >= rate
        scaled = x / tf.cast(1.0 - rate, x.dtype)
        return tf.where(keep, scaled, tf.zeros_like(scaled))

    return call


def _to_summary(values):
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
