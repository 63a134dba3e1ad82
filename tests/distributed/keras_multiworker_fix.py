"""Two defects of Keras 3's own `fit` under `tf.distribute.MultiWorkerMirroredStrategy`
(seen with Keras 3.15 / TensorFlow 2.21; keras-team/keras#20585): `fit` fails before
its first step with or without any callback. This mends both, for the multi-worker test
only; regaudit itself patches nothing.

1. `_maybe_symbolic_build` asks the strategy to reduce the whole (x, y) tuple of the
   first batch ("Attempt to convert a value (PerReplica ...) to a Tensor"); building
   needs only its shapes, so take the first local replica's tensors.
2. `reduce_per_replica` reduces each scalar log along axis 0 ("Invalid reduction
   dimension 0 for input with 0 dimensions"); a scalar is averaged with axis=None.
"""

import tensorflow as tf
from keras.src import tree
from keras.src.backend.tensorflow import trainer


def apply():
    build, reduce = trainer.TensorFlowTrainer._maybe_symbolic_build, trainer.reduce_per_replica

    def first_local(strategy, value):
        if isinstance(value, tf.distribute.DistributedValues):
            return strategy.experimental_local_results(value)[0]
        return value

    def maybe_symbolic_build(self, iterator=None, data_batch=None):
        if iterator is not None and self._distribute_strategy is not None:
            for _, _, batches in iterator:
                batch = next(batches)
                break
            data_batch = tree.map_structure(lambda v: first_local(self.distribute_strategy, v), batch)
            iterator = None
        return build(self, iterator=iterator, data_batch=data_batch)

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and trainer._collective_all_reduce_multi_worker(strategy):
            def one(value):
                if strategy.experimental_local_results(value)[0].shape.rank == 0:
                    return strategy.reduce("MEAN", value, axis=None)
                return reduce(value, strategy, reduction)

            return tree.map_structure(one, values)
        return reduce(values, strategy, reduction)

    trainer.TensorFlowTrainer._maybe_symbolic_build = maybe_symbolic_build
    trainer.reduce_per_replica = reduce_per_replica
