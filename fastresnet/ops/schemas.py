"""The fused ops' schemas, defined once and instantiated per backend.

Every backend gets its own copy of each op, ``fastresnet::<backend>_<op>``, with the same
schema and the same fake (meta) implementation. Separate names rather than one op with a
per-device kernel because two backends can serve the same device (the reference and the
C++ kernels both run on CPU; Triton runs on CPU under its interpreter), and an optimized
model must keep calling the backend it was built for. torch.compile and torch.export see
every one of them through its fake implementation.
"""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass(frozen=True)
class FusedOps:
    """One backend's fused ops, as callable OpOverloads."""

    conv2d_bias_act: Callable
    add_relu: Callable
    max_pool2d: Callable
    global_avg_pool: Callable


def qualname(backend: str, op: str) -> str:
    return f"{NAMESPACE}::{backend}_{op}"


_DEFINED: set[str] = set()


def define_backend_ops(backend: str) -> bool:
    """Define every fused op's schema and fake for ``backend``; False if already defined."""
    if backend in _DEFINED:
        return False
    for op, (schema, fake) in SCHEMAS.items():
        name = qualname(backend, op)
        torch.library.define(name, schema)
        torch.library.register_fake(name, fake)
    _DEFINED.add(backend)
    return True


def backend_ops(backend: str) -> FusedOps:
    """The OpOverloads of ``backend``'s fused ops (they must be defined already)."""
    namespace = getattr(torch.ops, NAMESPACE)
    return FusedOps(**{op: getattr(namespace, f"{backend}_{op}").default for op in SCHEMAS})
