"""Everything that depends on the Keras backend (TensorFlow, JAX, PyTorch) and on
Keras' internals."""
