"""The fused ops' schemas, defined once and instantiated per backend: the one list of ops.

Every backend gets its own copy of each op, ``fastresnet::<prefix>_<op>``, with the same
schema and the same fake (meta) implementation. Separate names rather than one op with a
per-device kernel because two backends can serve the same device (the reference and the
C++ kernels both run on CPU; Triton runs on CPU under its interpreter), and an optimized
model must keep calling the backend it was built for. The C++ CPU and CUDA kernels share the
prefix ``cpp``: they serve different devices. torch.compile and torch.export see every one
of them through its fake implementation. Which kernels exist is asked of the dispatcher.
"""

from __future__ import annotations

from dataclasses import make_dataclass
from typing import Callable

import torch

from . import meta

NAMESPACE = "fastresnet"

# op name -> (schema, fake implementation)
SCHEMAS: dict[str, tuple[str, Callable]] = {
    # act(conv2d(input, weight) + bias (+ residual)), rounded once to input.dtype. The weight
    # is in the named layout (ops/weight_layout.py): "oihw" for every backend, packed
    # layouts for the C++ CPU kernels.
    "conv2d_bias_act": (
        "(Tensor input, Tensor weight, Tensor bias, Tensor? residual, SymInt[2] stride, "
        "SymInt[2] padding, SymInt[2] dilation, SymInt groups, bool relu, str weight_layout=\"oihw\") -> Tensor",
        meta.conv2d_bias_act,
    ),
    # relu(input + residual): a block's add when it cannot go in a conv's epilogue.
    "add_relu": ("(Tensor input, Tensor residual) -> Tensor", meta.add_relu),
    "max_pool2d": (
        "(Tensor input, SymInt[2] kernel_size, SymInt[2] stride, SymInt[2] padding, "
        "SymInt[2] dilation, bool ceil_mode) -> Tensor",
        meta.max_pool2d,
    ),
    # (N, C, H, W) -> (N, C): the mean over H and W.
    "global_avg_pool": ("(Tensor input) -> Tensor", meta.global_avg_pool),
}


# The int8 ops: uint8 activations, each tensor with one (scale, zero point); int8 weights
# with a scale per output channel; int32 accumulation and a float32 requantizing epilogue.
# Their exact arithmetic, which every backend's kernels reproduce, is ops/int8_reference.py.
INT8_SCHEMAS: dict[str, tuple[str, Callable]] = {
    # float -> uint8: clamp(round_half_even(input / scale) + zero_point, 0, 255).
    "quantize": ("(Tensor input, float scale, int zero_point) -> Tensor", meta.quantize),
    # The fused conv: int32 sums of weight x input (the padding reads input_zero_point) minus
    # compensation, then * multiplier + bias (+ (residual - residual_zero_point) *
    # residual_multiplier), ReLU, and one rounding to uint8 with output_zero_point.
    "int8_conv2d": (
        "(Tensor input, Tensor weight, Tensor multiplier, Tensor bias, Tensor compensation, Tensor? residual, "
        "float residual_multiplier, int residual_zero_point, int input_zero_point, int output_zero_point, "
        "SymInt[2] stride, SymInt[2] padding, SymInt[2] dilation, SymInt groups, bool relu, "
        "str weight_layout=\"oihw\") -> Tensor",
        meta.int8_conv2d,
    ),
    # max pool on uint8: exact, so the output keeps the input's scale and zero point.
    "int8_max_pool2d": (
        "(Tensor input, SymInt[2] kernel_size, SymInt[2] stride, SymInt[2] padding, "
        "SymInt[2] dilation, bool ceil_mode) -> Tensor",
        meta.int8_max_pool2d,
    ),
    # uint8 (N, C, H, W) -> float32 (N, C): scale * (mean over H and W - zero_point).
    "dequantize_global_avg_pool": ("(Tensor input, float scale, int zero_point) -> Tensor", meta.dequantize_global_avg_pool),
}

# One backend's fused ops, as callable OpOverloads: an attribute per op of SCHEMAS (FusedOps)
# or of INT8_SCHEMAS (Int8Ops).
FusedOps = make_dataclass("FusedOps", [(op, Callable) for op in SCHEMAS], frozen=True)
Int8Ops = make_dataclass("Int8Ops", [(op, Callable) for op in INT8_SCHEMAS], frozen=True)
_OPS_CLASS = {id(SCHEMAS): FusedOps, id(INT8_SCHEMAS): Int8Ops}


def qualname(prefix: str, op: str) -> str:
    return f"{NAMESPACE}::{prefix}_{op}"


_DEFINED: set[tuple[str, int]] = set()


def define_backend_ops(prefix: str, family: dict = SCHEMAS) -> bool:
    """Define every op of ``family`` (SCHEMAS or INT8_SCHEMAS), schema and fake, as
    ``fastresnet::<prefix>_<op>``; False if already defined."""
    if (prefix, id(family)) in _DEFINED:
        return False
    for op, (schema, fake) in family.items():
        name = qualname(prefix, op)
        torch.library.define(name, schema)
        torch.library.register_fake(name, fake)
    _DEFINED.add((prefix, id(family)))
    return True


def backend_ops(prefix: str, family: dict = SCHEMAS):
    """The OpOverloads of ``family``'s ops ``fastresnet::<prefix>_*`` (defined already), as
    FusedOps or Int8Ops."""
    namespace = getattr(torch.ops, NAMESPACE)
    return _OPS_CLASS[id(family)](**{op: getattr(namespace, f"{prefix}_{op}").default for op in family})


def kernel_missing(prefix: str, dispatch_key: str, family: dict = SCHEMAS) -> list[str]:
    """The ops of ``family`` ``fastresnet::<prefix>_*`` (defined already) that have no kernel
    for ``dispatch_key`` ("CPU", "CUDA"), as the dispatcher answers."""
    return [op for op in family if not torch._C._dispatch_has_kernel_for_dispatch_key(qualname(prefix, op), dispatch_key)]
