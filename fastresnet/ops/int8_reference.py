"""The int8 ops in plain PyTorch: the arithmetic every int8 kernel reproduces.

An activation is uint8 with one (scale, zero point) per tensor: real = scale * (q - zero_point).
A conv weight is int8, symmetric, with one scale per output channel. The conv sums weight x
input exactly in integers (here in float64, exact for any ResNet layer: |sum| stays far below
2^53), the padding reading the input's zero point, as a real zero would; subtracts the
compensation (input_zero_point x the sum of each output channel's weights), then requantizes in
float32, one operation at a time and in this order, each rounded to float32:

    t = float32(acc) * multiplier[k] + bias[k]        # multiplier = s_in s_w[k] / s_out, bias / s_out
    t = t + float32(residual - residual_zero_point) * residual_multiplier   # s_res / s_out
    t = max(t, 0)                                      # with ReLU
    q = clamp(round_half_even(t) + output_zero_point, 0, 255)

A kernel that fuses a multiply and an add (FMA) rounds once where this rounds twice, and may
differ by one unit of the output where t falls within an ulp of a rounding boundary.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from . import checks, schemas
from .meta import output_memory_format

BACKEND = "reference"


def _where(op: str) -> str:
    return schemas.qualname(BACKEND, op)


def _to_uint8(t: torch.Tensor, zero_point: int, like: torch.Tensor) -> torch.Tensor:
    q = torch.round(t).add_(zero_point).clamp_(0, 255)  # torch.round: half to even
    return q.to(torch.uint8).contiguous(memory_format=output_memory_format(like))


def quantize(input: torch.Tensor, scale: float, zero_point: int) -> torch.Tensor:
    checks.check_quantize_args(_where("quantize"), input, scale, zero_point)
    x = input.float()
    if not torch.isfinite(x).all():
        raise ValueError(
            f"{_where('quantize')}: the input holds NaN or infinite values, which have no uint8 value; "
            "an int8 model takes finite input only"
        )
    return _to_uint8(x / torch.tensor(scale, dtype=torch.float32), zero_point, input)


def int8_conv2d(
    input: torch.Tensor,
    weight: torch.Tensor,
    multiplier: torch.Tensor,
    bias: torch.Tensor,
    compensation: torch.Tensor,
    residual: torch.Tensor | None,
    residual_multiplier: float,
    residual_zero_point: int,
    input_zero_point: int,
    output_zero_point: int,
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    groups: int,
    relu: bool,
    weight_layout: str = "oihw",
) -> torch.Tensor:
    checks.check_logical_layout(_where("int8_conv2d"), weight_layout)
    checks.check_int8_conv2d_args(
        _where("int8_conv2d"), input, weight, multiplier, bias, compensation, residual, residual_zero_point,
        input_zero_point, output_zero_point, stride, padding, dilation, groups, weight_layout,
    )  # fmt: skip
    pad_h, pad_w = padding
    x = F.pad(input.double(), (pad_w, pad_w, pad_h, pad_h), value=float(input_zero_point))
    acc = F.conv2d(x, weight.double(), None, list(stride), 0, list(dilation), groups)
    acc = acc - compensation.double().view(1, -1, 1, 1)  # exact: integers below 2^53
    t = acc.float() * multiplier.view(1, -1, 1, 1) + bias.view(1, -1, 1, 1)
    if residual is not None:
        shifted = residual.float() - residual_zero_point
        t = t + shifted * torch.tensor(residual_multiplier, dtype=torch.float32)
    if relu:
        t = t.clamp_min(0)
    return _to_uint8(t, output_zero_point, input)


def int8_max_pool2d(
    input: torch.Tensor,
    kernel_size: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    ceil_mode: bool,
) -> torch.Tensor:
    checks.check_max_pool2d_args(
        _where("int8_max_pool2d"), input, kernel_size, stride, padding, dilation, ceil_mode, dtype=torch.uint8
    )
    # In float32 (exact for 0..255): torch's uint8 max pool fails on channels_last inputs.
    out = F.max_pool2d(input.float(), list(kernel_size), list(stride), list(padding), list(dilation), ceil_mode)
    return out.to(torch.uint8).contiguous(memory_format=output_memory_format(input))


def dequantize_global_avg_pool(input: torch.Tensor, scale: float, zero_point: int) -> torch.Tensor:
    checks.check_global_avg_pool_args(_where("dequantize_global_avg_pool"), input, dtype=torch.uint8)
    pixels = input.shape[2] * input.shape[3]
    sums = input.sum(dim=(2, 3), dtype=torch.int64)  # exact
    return (scale * (sums.double() - zero_point * pixels) / pixels).float()


def register() -> schemas.Int8Ops:
    """Define the reference int8 ops (once) and return them."""
    if schemas.define_backend_ops(BACKEND, schemas.INT8_SCHEMAS):
        for op in schemas.INT8_SCHEMAS:
            torch.library.impl(_where(op), "CompositeExplicitAutograd", globals()[op])
    return schemas.backend_ops(BACKEND, schemas.INT8_SCHEMAS)
