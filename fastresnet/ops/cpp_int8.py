"""The cpp-cpu backend's int8 ops (schemas.INT8_SCHEMAS under the prefix ``cpp``).

The conv is the C++ kernels' (csrc/cpu/int8_conv_kernel.h), registered by the extension as
``fastresnet::cpp_int8_conv2d``. The other three are memory-bound passes over small tensors
(the input's quantization, the uint8 max pool, the dequantizing global average pool): they run
the reference's own code (ops/int8_reference.py), registered here under the same prefix, so
that one backend holds the whole family; their errors name the reference op they run.
"""

from __future__ import annotations

import torch

from . import int8_reference, schemas

PREFIX = "cpp"
_FROM_REFERENCE = ("quantize", "int8_max_pool2d", "dequantize_global_avg_pool")


def register() -> schemas.Int8Ops:
    """Define the cpp int8 ops (once; the extension must be loaded) and return them."""
    if schemas.define_backend_ops(PREFIX, schemas.INT8_SCHEMAS):
        for op in _FROM_REFERENCE:
            torch.library.impl(schemas.qualname(PREFIX, op), "CPU", getattr(int8_reference, op))
    return schemas.backend_ops(PREFIX, schemas.INT8_SCHEMAS)
