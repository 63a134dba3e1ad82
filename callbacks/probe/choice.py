"""The probe: a fixed set of samples, chosen once, that every audit runs on.

`choose_probe` takes `probe=` whole if given, else `probe_size` samples (seeded) of the
validation data of the running `fit`, else of its training data. It never reads the
training data where reading would change training: a `tf.data.Dataset`, a `PyDataset`
or a generator given as training data may run random augmentation in its `map`
(advancing the seed state of its random layers) or hand out batches that training then
misses, so the probe then has to come from `probe=` or the validation data
(`ProbeUnavailable` says so).
"""

import inspect
from dataclasses import dataclass

import keras
import numpy as np

from regaudit.errors import UsageError

from regaudit.callbacks.backends import backend


class ProbeUnavailable(UsageError):
    """No probe can be drawn without touching the training pipeline's state."""


@dataclass
class ProbeData:
    """The probe samples: `inputs` (as the model takes them), `targets` (or None),
    `source` ("user", "val" or "train"), the indices taken from that source and the
    sample weights given with them (or None: a per-token head leaves out positions of
    weight 0, the padding)."""

    inputs: object
    targets: object
    source: str
    indices: np.ndarray
    weights: object = None

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
                return {key: local.get(key) for key in ("x", "y", "sample_weight", "validation_data")}
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


def _weights(data):
    """The sample weights of an `(x, y, sample_weight)` tuple, else None."""
    return data[2] if isinstance(data, tuple) and len(data) == 3 else None


def _to_numpy(structure):
    return keras.tree.map_structure(lambda a: np.asarray(a), structure)


def _collect_batches(batches, size):
    """Take batches (x, y[, w]) or x from an iterable until `size` samples are in."""
    xs, ys, ws, count = [], [], [], 0
    for element in batches:
        element = tuple(element) if isinstance(element, list) else element
        x, y = _unpack(element)
        w = _weights(element)
        xs.append(_to_numpy(x))
        ys.append(None if y is None else _to_numpy(y))
        ws.append(None if w is None else np.asarray(w))
        count += len(keras.tree.flatten(xs[-1])[0])
        if count >= size:
            break
    if not xs:
        return None, None, None
    join = lambda parts: None if any(p is None for p in parts) else keras.tree.map_structure(  # noqa: E731
        lambda *p: np.concatenate(p), *parts)
    return keras.tree.map_structure(lambda *parts: np.concatenate(parts), *xs), join(ys), join(ws)


def _materialize(x, y, size, weights=None):
    """(inputs, targets, sample weights) as numpy structures, reading at most about
    `size` samples of a dataset (whose elements carry the weights). Python generators are
    refused: reading them would steal training batches."""
    if _is_tf_dataset(x):
        return _collect_batches(x.as_numpy_iterator(), size)
    if isinstance(x, keras.utils.PyDataset):
        return _collect_batches((x[i] for i in range(len(x))), size)
    if inspect.isgenerator(x) or (hasattr(x, "__next__") and not hasattr(x, "__len__")):
        raise UsageError(
            f"regaudit: cannot take a probe from a {type(x).__name__} without consuming "
            "training batches; pass probe=(x, y) with a few hundred samples."
        )
    return _to_numpy(x), (None if y is None else _to_numpy(y)), (
        None if weights is None else np.asarray(weights))


def _is_tf_dataset(x):
    """A `tf.data.Dataset` (on any backend; TensorFlow is then already imported)."""
    tf = backend.tensorflow_module()
    return tf is not None and isinstance(x, tf.data.Dataset)


def _touches_training(x):
    """Whether reading samples of `x` would change training: a `tf.data.Dataset` runs
    its `map` (random augmentation advances its seed state; a shuffle's reshuffle seed
    moves with every new iterator), a `PyDataset`'s `__getitem__` may draw random
    numbers, a generator hands out batches training then misses."""
    return (_is_tf_dataset(x) or isinstance(x, keras.utils.PyDataset) or inspect.isgenerator(x)
            or (hasattr(x, "__next__") and not hasattr(x, "__len__")))


def choose_probe(model, probe, probe_size, seed):
    """Choose the probe set once: `probe` whole if given, else `probe_size` samples of the
    validation data of the running `fit`, else of its training data (arrays only, see the
    module docstring), drawn without replacement with `seed` (all of them when fewer
    exist)."""
    if probe is not None:
        x, y = _unpack(probe)
        weights, source = _weights(probe), "user"
    else:
        found = find_fit_data(model) or {}
        if found.get("validation_data") is not None:
            x, y = _unpack(found["validation_data"])
            weights, source = _weights(found["validation_data"]), "val"
        elif found.get("x") is not None:
            x, y, source = found["x"], found.get("y"), "train"
            weights = found.get("sample_weight")
            if _touches_training(x):
                raise ProbeUnavailable(
                    f"regaudit: the training data is a {type(x).__name__} and there is no "
                    "validation data, so a probe drawn from it would change training "
                    "(random augmentation, shuffling or batches taken); the activation, "
                    "shift and ensemble measures are off for this fit. Pass "
                    "probe=(x, y) with a few hundred samples, or validation_data=.")
        else:
            raise UsageError(
                "regaudit: found no data for the probe (received no probe= and no x in "
                "model.fit); pass probe=(x, y) to the callback."
            )
    x, y, weights = _materialize(x, y, probe_size, weights)
    if x is None or len(keras.tree.flatten(x)[0]) == 0:
        raise UsageError(
            f"regaudit: the {source} data for the probe is empty; expected at least one "
            "sample. Pass probe=(x, y) with data."
        )
    # a probe the user passed is used whole
    return _draw(x, y, source, None if source == "user" else probe_size, seed, weights)


def check_probe(probe):
    """Refuse a `probe=` the audit cannot use, in one line, when the callback is made:
    `x`, `(x, y)` or `(x, y, sample_weight)` of arrays or tensors with one first axis
    (samples), or a `tf.data.Dataset` / `keras.utils.PyDataset` of such batches."""
    if isinstance(probe, tuple) and len(probe) not in (1, 2, 3):
        raise UsageError(
            f"regaudit: probe= expects x, (x, y) or (x, y, sample_weight); received a tuple of "
            f"{len(probe)} items. Pass probe=(x_probe, y_probe).")
    x, y = _unpack(probe)
    if _is_tf_dataset(x) or isinstance(x, keras.utils.PyDataset):
        return
    if inspect.isgenerator(x) or (hasattr(x, "__next__") and not hasattr(x, "__len__")):
        raise UsageError(
            f"regaudit: probe= expects arrays, tensors or a dataset; received a "
            f"{type(x).__name__}, which can be read only once. Pass probe=(x_probe, y_probe).")
    sizes = {"x": _sizes(x, "x")}
    if y is not None:
        sizes["y"] = _sizes(y, "y")
    if _weights(probe) is not None:
        sizes["sample_weight"] = _sizes(_weights(probe), "sample_weight")
    lengths = {n for found in sizes.values() for n in found}
    if len(lengths) > 1:
        said = ", ".join(f"{part} {sorted(found)}" for part, found in sizes.items())
        raise UsageError(
            f"regaudit: probe= parts hold different numbers of samples ({said}); expected one "
            "first axis of the same length in x, y and sample_weight.")
    if lengths == {0}:
        raise UsageError(
            "regaudit: probe= holds no samples; expected at least one. Pass probe=(x, y) "
            "with data, or leave probe= out to draw it from fit's data.")


def _sizes(structure, part):
    """The first-axis lengths of the arrays in one part of a probe; a `UsageError` for a
    leaf that is not a numeric array with a sample axis."""
    try:
        leaves = keras.tree.flatten(structure)
    except TypeError:
        leaves = [structure]
    found = set()
    for leaf in leaves:
        shape = None if isinstance(leaf, (str, bytes)) else getattr(leaf, "shape", None)
        if shape is None and not isinstance(leaf, (str, bytes)):
            try:
                shape = np.asarray(leaf).shape
            except (TypeError, ValueError):
                shape = None
        if shape is None or len(shape) == 0:
            raise UsageError(
                f"regaudit: probe= expects arrays or tensors with a sample axis (x, y); received "
                f"{part}={_short(leaf)} ({type(leaf).__name__}). Pass probe=(x_probe, y_probe).")
        found.add(-1 if shape[0] is None else int(shape[0]))
    return found


def _short(value, limit=40):
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def choose_train_probe(model, size, seed):
    """A probe of at most `size` training samples of the running `fit` (for the
    train-vs-validation measures), or None when the training data cannot be read without
    changing training (`_touches_training`)."""
    found = find_fit_data(model) or {}
    if found.get("x") is None or _touches_training(found["x"]):
        return None
    try:
        x, y, weights = _materialize(found["x"], found.get("y"), size, found.get("sample_weight"))
    except UsageError:
        return None
    return _draw(x, y, "train", size, seed, weights)


def _draw(x, y, source, size, seed, weights=None):
    """ProbeData of `size` samples of (x, y) drawn without replacement with `seed`, in
    their original order (all samples when `size` is None or fewer exist)."""
    available = len(keras.tree.flatten(x)[0])
    if size is None or available <= size:
        indices = np.arange(available)
    else:
        indices = np.sort(np.random.default_rng(seed).choice(available, size=size, replace=False))
    take = lambda a: a[indices]  # noqa: E731
    targets = None if y is None else keras.tree.map_structure(take, y)
    weights = None if weights is None else keras.tree.map_structure(take, weights)
    return ProbeData(keras.tree.map_structure(take, x), targets, source, indices, weights)
