"""Fake (meta) implementations of the fused ops: output shape, dtype and layout only.

Every backend's copy of an op shares these, so compiled and exported graphs agree with
what any backend returns. The output layout rule is part of each op's contract: an input
in channels_last gives a channels_last output, anything else a contiguous one.
"""

from __future__ import annotations

from typing import Sequence

import torch

from . import checks


def output_memory_format(x: torch.Tensor) -> torch.memory_format:
    if not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


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
    shape = checks.check_conv2d_args(
        "conv2d_bias_act", input, weight, bias, residual, stride, padding, dilation, groups, weight_layout
    )
    return input.new_empty(shape).contiguous(memory_format=output_memory_format(input))


def add_relu(input: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    checks.check_add_relu_args("add_relu", input, residual)
    return torch.empty_like(input, memory_format=output_memory_format(input))


def max_pool2d(
    input: torch.Tensor,
    kernel_size: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    ceil_mode: bool,
) -> torch.Tensor:
    shape = checks.check_max_pool2d_args(
        "max_pool2d", input, kernel_size, stride, padding, dilation, ceil_mode
    )
    return input.new_empty(shape).contiguous(memory_format=output_memory_format(input))


def global_avg_pool(input: torch.Tensor) -> torch.Tensor:
    shape = checks.check_global_avg_pool_args("global_avg_pool", input)
    return input.new_empty(shape)


# -- int8 ------------------------------------------------------------------------------


def quantize(input: torch.Tensor, scale: float, zero_point: int) -> torch.Tensor:
    checks.check_quantize_args("quantize", input, scale, zero_point)
    return torch.empty_like(input, dtype=torch.uint8, memory_format=output_memory_format(input))


def int8_conv2d(
    input, weight, multiplier, bias, compensation, residual, residual_multiplier, residual_zero_point,
    input_zero_point, output_zero_point, stride, padding, dilation, groups, relu, weight_layout="oihw",
) -> torch.Tensor:  # fmt: skip
    shape = checks.check_int8_conv2d_args(
        "int8_conv2d", input, weight, multiplier, bias, compensation, residual, residual_zero_point,
        input_zero_point, output_zero_point, stride, padding, dilation, groups, weight_layout,
    )  # fmt: skip
    return input.new_empty(shape).contiguous(memory_format=output_memory_format(input))


def int8_max_pool2d(input, kernel_size, stride, padding, dilation, ceil_mode) -> torch.Tensor:
    shape = checks.check_max_pool2d_args(
        "int8_max_pool2d", input, kernel_size, stride, padding, dilation, ceil_mode, dtype=torch.uint8
    )
    return input.new_empty(shape).contiguous(memory_format=output_memory_format(input))


def dequantize_global_avg_pool(input: torch.Tensor, scale: float, zero_point: int) -> torch.Tensor:
    shape = checks.check_global_avg_pool_args("dequantize_global_avg_pool", input, dtype=torch.uint8)
    return input.new_empty(shape, dtype=torch.float32)
