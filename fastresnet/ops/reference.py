"""The reference backend: every fused op in plain PyTorch.

It is the ground truth the other backends are tested against and the last fallback, so it
favours exactness over speed: float16 and bfloat16 are computed in float32 and rounded once
at the end, as a fused kernel with an fp32 accumulator and epilogue would.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from . import checks, schemas
from .meta import output_memory_format

BACKEND = "reference"
_LOW_PRECISION = (torch.float16, torch.bfloat16)


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in _LOW_PRECISION else dtype


def _where(op: str) -> str:
    return schemas.qualname(BACKEND, op)


def conv2d_bias_act(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    residual: torch.Tensor | None,
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    groups: int,
    relu: bool,
    weight_layout: str = "oihw",
) -> torch.Tensor:
    checks.check_logical_layout(_where("conv2d_bias_act"), weight_layout)
    checks.check_conv2d_args(
        _where("conv2d_bias_act"), input, weight, bias, residual, stride, padding, dilation, groups
    )
    compute = _compute_dtype(input.dtype)
    out = F.conv2d(
        input.to(compute), weight.to(compute), bias.to(compute), list(stride), list(padding), list(dilation), groups
    )
    if residual is not None:
        out.add_(residual)
    if relu:
        out.relu_()
    return out.to(input.dtype, memory_format=output_memory_format(input))


def add_relu(input: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    checks.check_add_relu_args(_where("add_relu"), input, residual)
    out = torch.add(input, residual).relu_()
    return out.contiguous(memory_format=output_memory_format(input))


def max_pool2d(
    input: torch.Tensor,
    kernel_size: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    ceil_mode: bool,
) -> torch.Tensor:
    checks.check_max_pool2d_args(
        _where("max_pool2d"), input, kernel_size, stride, padding, dilation, ceil_mode
    )
    out = F.max_pool2d(input, list(kernel_size), list(stride), list(padding), list(dilation), ceil_mode)
    return out.contiguous(memory_format=output_memory_format(input))


def global_avg_pool(input: torch.Tensor) -> torch.Tensor:
    checks.check_global_avg_pool_args(_where("global_avg_pool"), input)
    return input.mean(dim=(2, 3), dtype=_compute_dtype(input.dtype)).to(input.dtype)


def register() -> schemas.FusedOps:
    """Define the reference ops (once) and return them."""
    if schemas.define_backend_ops(BACKEND):
        for op in schemas.SCHEMAS:
            # CompositeExplicitAutograd: one kernel for every device PyTorch supports.
            torch.library.impl(_where(op), "CompositeExplicitAutograd", globals()[op])
    return schemas.backend_ops(BACKEND)
