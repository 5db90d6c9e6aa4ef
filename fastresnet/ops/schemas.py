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


# One backend's fused ops, as callable OpOverloads: an attribute per op of SCHEMAS.
FusedOps = make_dataclass("FusedOps", [(op, Callable) for op in SCHEMAS], frozen=True)


def qualname(prefix: str, op: str) -> str:
    return f"{NAMESPACE}::{prefix}_{op}"


_DEFINED: set[str] = set()


def define_backend_ops(prefix: str) -> bool:
    """Define every fused op's schema and fake as ``fastresnet::<prefix>_<op>``; False if
    already defined."""
    if prefix in _DEFINED:
        return False
    for op, (schema, fake) in SCHEMAS.items():
        name = qualname(prefix, op)
        torch.library.define(name, schema)
        torch.library.register_fake(name, fake)
    _DEFINED.add(prefix)
    return True


def backend_ops(prefix: str) -> FusedOps:
    """The OpOverloads of the fused ops ``fastresnet::<prefix>_*`` (defined already)."""
    namespace = getattr(torch.ops, NAMESPACE)
    return FusedOps(**{op: getattr(namespace, f"{prefix}_{op}").default for op in SCHEMAS})


def kernel_missing(prefix: str, dispatch_key: str) -> list[str]:
    """The ops ``fastresnet::<prefix>_*`` (defined already) that have no kernel for
    ``dispatch_key`` ("CPU", "CUDA"), as the dispatcher answers."""
    return [op for op in SCHEMAS if not torch._C._dispatch_has_kernel_for_dispatch_key(qualname(prefix, op), dispatch_key)]
