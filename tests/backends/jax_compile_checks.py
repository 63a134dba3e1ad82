"""Checks of JAX's compiled pass (`regaudit.callbacks.backends.jax_compile`), run with
KERAS_BACKEND=jax by test_jax_compile.py; prints one line per check that held.

1. weights changed after the pass was compiled (as training does) are the weights the
   next audit measures: its output tap is the model's own output, computed anew;
2. a model whose code cannot be traced (a Python branch on a tensor's value) is audited
   op by op after one warning, with the numbers of its traceable twin model.
"""

import warnings

import keras
import numpy as np
from keras import layers, ops

from regaudit.callbacks.probe.probe_pass import ProbePass
from regaudit.callbacks.probe.choice import ProbeData

assert keras.backend.backend() == "jax"
rng = np.random.default_rng(0)
x = rng.normal(size=(40, 6)).astype("float32")
probe = ProbeData(inputs=x, targets=None, source="user", indices=np.arange(len(x)))


class Guard(layers.Layer):
    """Python control flow on a tensor's value: untraceable by jax.jit."""

    def call(self, inputs):
        if float(ops.max(ops.abs(inputs))) > 1e30:
            return inputs * 0.0
        return inputs

    def compute_output_shape(self, input_shape):  # Keras' symbolic call cannot trace it either
        return input_shape


def build(guard):
    keras.utils.set_random_seed(1)
    inputs = keras.Input((6,))
    h = layers.Dense(8, activation="relu", name="hidden")(inputs)
    h = Guard(name="guard")(h) if guard else layers.Identity(name="guard")(h)
    h = layers.Dropout(0.3, name="drop")(h)
    return keras.Model(inputs, layers.Dense(3, name="out")(h))


def output_mean(probe_pass):
    summaries, *_ = probe_pass.run()
    return summaries["out"].mean


model = build(guard=False)
probe_pass = ProbePass(model, probe, batch_size=16)
before = output_mean(probe_pass)
assert np.isclose(before, np.mean(ops.convert_to_numpy(model(x))), rtol=1e-6, atol=1e-7)
kernel = model.get_layer("out").kernel
kernel.assign(ops.convert_to_numpy(kernel) * 3.0 + 0.5)
after = output_mean(probe_pass)
expected = np.mean(ops.convert_to_numpy(model(x)))
assert not np.isclose(after, before) and np.isclose(after, expected, rtol=1e-6, atol=1e-7), (before, after, expected)
print("new weights measured")

plain = ProbePass(build(guard=False), probe, batch_size=16)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    guarded = ProbePass(build(guard=True), probe, batch_size=16)
    summaries, *_ = guarded.run()
    det, members, counts, _ = guarded.run_ensemble(4)
said = [str(w.message) for w in caught if "cannot be compiled with jax.jit" in str(w.message)]
assert len(said) == 2, said  # one per compiled function: the pass, the ensemble
reference, *_ = plain.run()
for name in ("hidden", "out"):
    for field in ("mean", "m2", "min", "max"):
        assert np.isclose(getattr(summaries[name], field), getattr(reference[name], field), rtol=1e-6), (name, field)
ref_det, ref_members, ref_counts, _ = plain.run_ensemble(4)
np.testing.assert_allclose(members[0], ref_members[0], rtol=1e-6, atol=1e-6)
np.testing.assert_array_equal(counts, ref_counts)
print("untraceable model audited op by op")
