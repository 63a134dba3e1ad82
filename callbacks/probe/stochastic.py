"""Layers that draw random numbers in inference, and the model's seed state kept.

A VAE's `Sampling` layer or a custom noise layer calls `keras.random.normal(...,
seed=self.seed_generator)` whatever `training` is: every prediction differs, and every
call advances the layer's `SeedGenerator` state, which training reads next. The audit
runs the model on the probe, so it would move that state and change training.

- `drawing_generators()`: while a trace runs, records every `SeedGenerator` that draws.
  The probe pass is traced in inference mode with the Dropout family never drawing from
  its generators (the twin's noise is stateless, RNN masks are suppressed), so a
  generator drawn there belongs to a layer that is random in inference: a
  *stochastic layer*, listed in `model.json` (`stochastic: true`) and in the report.
- `kept_seed_state(model)`: every seed generator state of the model is read before the
  block and assigned back after it (also after an error or Ctrl-C), so an audit, its
  ensemble and the gradient ICS leave the model's seed state exactly as it was.
"""

import contextlib
import threading

import keras
import numpy as np

_LOCK = threading.RLock()


def seed_generators(model):
    """[(layer, generator)] for every `SeedGenerator` a layer of `model` holds, the
    model and its nested layers included."""
    found = []
    for layer in model._flatten_layers(include_self=True):
        for generator in getattr(layer, "_seed_generators", ()):
            found.append((layer, generator))
    return found


@contextlib.contextmanager
def drawing_generators(found):
    """While the block runs, the id of every `SeedGenerator` that draws goes into the
    set `found`."""
    with _LOCK:
        original = keras.random.SeedGenerator.next

        def next_recorded(self, *args, **kwargs):
            found.add(id(self))
            return original(self, *args, **kwargs)

        keras.random.SeedGenerator.next = next_recorded
        try:
            yield found
        finally:
            keras.random.SeedGenerator.next = original


def stochastic_layers(model, drawn):
    """The layers of `model` owning a generator whose id is in `drawn`."""
    return [layer for layer, generator in seed_generators(model) if id(generator) in drawn]


@contextlib.contextmanager
def kept_seed_state(model):
    """Every seed generator state of `model` as it was before the block, after it."""
    saved = [(generator.state, np.array(generator.state.numpy()))
             for _, generator in seed_generators(model)]
    try:
        yield
    finally:
        for state, value in saved:
            if not np.array_equal(state.numpy(), value):
                state.assign(value)
