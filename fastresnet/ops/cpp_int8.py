"""The cpp-cpu backend's int8 ops (schemas.INT8_SCHEMAS under the prefix ``cpp``).

All four are the extension's (csrc/cpu/ops.cpp, registered as ``fastresnet::cpp_*``): the conv
is the tiers' kernels (csrc/cpu/int8_conv_kernel.h); quantize, the uint8 max pool and the
dequantizing global average pool are single passes in plain C++. Each gives the reference's
answers (ops/int8_reference.py) bit for bit. This module defines their schemas and fakes.
"""

from __future__ import annotations

from . import schemas

PREFIX = "cpp"


def register() -> schemas.Int8Ops:
    """Define the cpp int8 ops (once; the extension must be loaded) and return them."""
    schemas.define_backend_ops(PREFIX, schemas.INT8_SCHEMAS)
    return schemas.backend_ops(PREFIX, schemas.INT8_SCHEMAS)
