"""regaudit's own stateless random numbers: the same bits on TensorFlow, JAX and PyTorch.

The twin and the Monte-Carlo ensemble draw their noise here, never from a model's
`SeedGenerator` (so no seed state moves) and not from the backends' own stateless
generators either (Philox on TensorFlow, threefry on JAX, a torch.Generator: three
different streams). Each value is a 32-bit integer hash of (key, element index), the key
itself a hash of (audit seed, probe position, replica block, noise source, part): a
counter-based generator written in `keras.ops` int32 arithmetic (multiplications wrap,
right shifts are masked to be logical), so the same saved model and probe see the very
same dropout masks on every backend, and the ensemble's and the twin's numbers agree
across backends to float rounding. The hash is Chris Wellons' `lowbias32` (bias
0.17, found by his hash-prospector), a finalizer with good avalanche: uniform values take
its top 24 bits, normal ones Box-Muller on two of them.
"""

import numpy as np
from keras import ops

_M1 = 0x7FEB352D
_M2 = 0x846CA68B
_GOLDEN = 0x9E3779B9
_MASK = 0xFFFFFFFF


def signed(value):
    """A 32-bit pattern as the int32 that holds it."""
    value &= _MASK
    return value - (1 << 32) if value >= 1 << 31 else value


def hash_int(x):
    """`lowbias32` of a Python int (its low 32 bits): the reference of `hash32`."""
    x &= _MASK
    x ^= x >> 16
    x = (x * _M1) & _MASK
    x ^= x >> 15
    x = (x * _M2) & _MASK
    x ^= x >> 16
    return x


def _logical_right(x, bits):
    return ops.bitwise_and(ops.right_shift(x, bits), (1 << (32 - bits)) - 1)


def hash32(x):
    """`lowbias32` of every entry of an int32 tensor (as int32 bit patterns)."""
    x = ops.bitwise_xor(x, _logical_right(x, 16))
    x = ops.multiply(x, ops.cast(signed(_M1), "int32"))
    x = ops.bitwise_xor(x, _logical_right(x, 15))
    x = ops.multiply(x, ops.cast(signed(_M2), "int32"))
    return ops.bitwise_xor(x, _logical_right(x, 16))


def key_int(*parts):
    """The key of a stream from Python ints (seed, position, block, source, part)."""
    key = 0
    for part in parts:
        key = hash_int(key ^ hash_int(int(part) + _GOLDEN))
    return key


def key_tensor(*parts):
    """`key_int` of int32 scalar tensors (TensorFlow's graph: the probe position and the
    replica block are tensors there)."""
    key = ops.cast(0, "int32")
    for part in parts:
        part = ops.cast(part, "int32")
        key = hash32(ops.bitwise_xor(key, hash32(ops.add(part, ops.cast(signed(_GOLDEN), "int32")))))
    return key


def _bits(index, key):
    """The hash of each element index under `key` (int32 bit patterns)."""
    if isinstance(key, int):
        key = signed(key)
    return hash32(ops.bitwise_xor(hash32(index), ops.cast(key, "int32")))


def _unit(bits):
    """[0, 1) float32 from the top 24 bits: exact in float32."""
    return ops.cast(_logical_right(bits, 8), "float32") * np.float32(2.0**-24)


def uniform(index, key):
    """Uniform [0, 1) float32 values, one per entry of the int32 `index` tensor."""
    return _unit(_bits(index, key))


def normal(index, key):
    """Standard normal float32 values (Box-Muller on two hashed uniforms per entry)."""
    first = _bits(index, key)
    second = hash32(ops.bitwise_xor(first, ops.cast(signed(_GOLDEN), "int32")))
    u1 = _unit(first) + np.float32(2.0**-25)  # (0, 1): the logarithm stays finite
    u2 = _unit(second)
    return ops.sqrt(np.float32(-2.0) * ops.log(u1)) * ops.cos(np.float32(2 * np.pi) * u2)


def reference_uniform(count, key):
    """`uniform` of indices 0..count-1 in numpy, from `hash_int` (the tests' reference)."""
    return np.array([(hash_int(hash_int(i) ^ key) >> 8) * 2.0**-24 for i in range(count)], np.float32)
