"""Everything that depends on the Keras backend, and on Keras' internals.

The backend is chosen once, here, when regaudit's Keras side is first imported:
`backend` is the module of the one Keras runs (`keras.backend.backend()`):
`tensorflow`, `jax` or `torch` (also any other eager backend). The three modules have
the same names (as Keras keeps `keras/src/backend/{tensorflow,jax,torch}/`): the pass's
compilation (`compiled`, `signature`, `constant`, `cond`), its tensor helpers (`rows`,
`positions`, `tile_first`, `by_replica`, `gather_rows`, `zeros64`, `stack`, `host`), its
reductions (`reductions`: `tensorflow_reductions`, `jax_reductions`, `host_reductions`,
with the same keys), the twin's tensor operations (`TwinOps`: `tensorflow_twin`,
`jax_twin`, `eager_twin`), the loss's `gradients`, a symbolic `trace`. What the three
share is `common`; the draws every twin makes, the same bits on every backend, are
`draws`; what regaudit reads of Keras' private API is `keras_internals`.

    from regaudit.callbacks.backends import backend
    backend.rows(x)

No module outside this folder asks which backend runs or imports a framework.
"""

import keras

#: what the user's model runs on, as Keras names it
NAME = keras.backend.backend()

if NAME == "tensorflow":
    from regaudit.callbacks.backends import tensorflow as backend
elif NAME == "jax":
    from regaudit.callbacks.backends import jax as backend
else:  # PyTorch, and any other backend that runs eagerly
    from regaudit.callbacks.backends import torch as backend

__all__ = ["NAME", "backend"]
