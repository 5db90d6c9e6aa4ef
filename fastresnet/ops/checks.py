"""Argument checks for the fused ops: clear errors raised before any kernel runs.

Shared by the fake implementations (so torch.compile and torch.export report the same
errors) and by the kernels themselves. Each message names what was expected and what came.
"""

from __future__ import annotations

from typing import Sequence

import torch

from . import weight_layout as weight_layouts


def _shape(t: torch.Tensor) -> tuple:
    return tuple(t.shape)


def check_activation(
    where: str,
    x: torch.Tensor,
    *,
    dtype: torch.dtype,
    device: torch.device,
    channels: int | None = None,
) -> None:
    """An (N, C, H, W) floating tensor of ``dtype`` on ``device`` with ``channels`` channels."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{where}: expected a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(
            f"{where}: expected a 4-D input (N, C, H, W), got a {x.dim()}-D tensor of shape {_shape(x)}"
        )
    if x.dtype != dtype:
        raise TypeError(f"{where}: expected dtype {dtype}, got {x.dtype}")
    if x.device.type != device.type or (
        device.index is not None and x.device.index is not None and x.device.index != device.index
    ):
        raise ValueError(f"{where}: expected a tensor on device {device}, got one on {x.device}")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(
            f"{where}: expected {channels} input channels, shape (N, {channels}, H, W); "
            f"got shape {_shape(x)}"
        )


def conv2d_output_size(size, kernel: int, stride: int, padding: int, dilation: int):
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def pool2d_output_size(size, kernel: int, stride: int, padding: int, dilation: int, ceil_mode: bool):
    """As ATen's pooling_output_shape: with ceil_mode the last window must start inside."""
    out = (size + 2 * padding - dilation * (kernel - 1) - 1 + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out = out - 1
    return out


def _pair(where: str, name: str, value: Sequence[int], minimum: int) -> None:
    if len(value) != 2 or any(v < minimum for v in value):
        raise ValueError(f"{where}: expected {name} as two integers >= {minimum}, got {list(value)}")


def _spatial_output(where: str, x: torch.Tensor, out_h, out_w) -> None:
    if out_h <= 0 or out_w <= 0:
        raise ValueError(
            f"{where}: input of spatial size {_shape(x)[2:]} is too small, the output would be "
            f"{out_h}x{out_w}"
        )


def conv_weight_geometry(
    where: str, weight: torch.Tensor, bias: torch.Tensor, groups: int, weight_layout: str = weight_layouts.LOGICAL
) -> tuple:
    """(C_out, C_in/groups, KH, KW) of a conv weight in the named layout (see ops/weight_layout.py)."""
    return weight_layouts.geometry(where, weight_layouts.parse(weight_layout, where), weight, bias, groups)


def check_logical_layout(where: str, weight_layout: str) -> None:
    """For the backends that read only the logical weight (reference, Triton, CUDA C++)."""
    if weight_layout != weight_layouts.LOGICAL:
        raise ValueError(
            f"{where}: this backend reads weights in the logical layout {weight_layouts.LOGICAL!r} only, "
            f"got {weight_layout!r} (a layout of the C++ CPU kernels)"
        )


def check_conv2d_args(
    where: str,
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    residual: torch.Tensor | None,
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    groups: int,
    weight_layout: str = weight_layouts.LOGICAL,
) -> tuple:
    """Validate a conv2d_bias_act call and return its output shape."""
    c_out, c_in_per_group, kh, kw = conv_weight_geometry(where, weight, bias, groups, weight_layout)
    if groups < 1 or c_out % groups != 0:
        raise ValueError(f"{where}: groups={groups} must be >= 1 and divide C_out={c_out}")
    # The weight's dtype is its layout's: the activations' for the logical layout, float32 for
    # a Winograd one over bf16 activations. The bias is always in the activations' dtype.
    layout = weight_layouts.parse(weight_layout, where)
    activations = weight.dtype if layout.tier is None else bias.dtype
    if layout.tier is not None and (
        str(weight.dtype).removeprefix("torch.") != layout.dtype
        or str(activations).removeprefix("torch.") not in layout.activation_dtypes
    ):
        raise TypeError(
            f"{where}: the weight laid out as {layout.name!r} is {layout.dtype} for activations of dtype "
            f"{' or '.join(layout.activation_dtypes)}; got a {weight.dtype} weight and a {bias.dtype} bias"
        )
    check_activation(where, input, dtype=activations, device=weight.device, channels=c_in_per_group * groups)
    if _shape(bias) != (c_out,) or bias.dtype != activations or bias.device != weight.device:
        raise ValueError(
            f"{where}: expected a bias of shape ({c_out},), dtype {activations} on {weight.device}; "
            f"got shape {_shape(bias)}, dtype {bias.dtype} on {bias.device}"
        )
    return _conv_output_shape(where, input, residual, c_out, kh, kw, stride, padding, dilation)


def _conv_output_shape(where, input, residual, c_out, kh, kw, stride, padding, dilation) -> tuple:
    """The conv's output shape, its stride, padding and dilation checked, and the residual against it."""
    _pair(where, "stride", stride, 1)
    _pair(where, "padding", padding, 0)
    _pair(where, "dilation", dilation, 1)
    out_h = conv2d_output_size(input.shape[2], kh, stride[0], padding[0], dilation[0])
    out_w = conv2d_output_size(input.shape[3], kw, stride[1], padding[1], dilation[1])
    _spatial_output(where, input, out_h, out_w)
    out_shape = (input.shape[0], c_out, out_h, out_w)
    if residual is not None:
        check_residual(where, residual, out_shape, input)
    return out_shape


def check_residual(where: str, residual: torch.Tensor, out_shape: tuple, input: torch.Tensor) -> None:
    if _shape(residual) != tuple(out_shape):
        raise ValueError(
            f"{where}: expected a residual of the output's shape {tuple(out_shape)}, got {_shape(residual)}"
        )
    if residual.dtype != input.dtype or residual.device != input.device:
        raise TypeError(
            f"{where}: expected a residual of dtype {input.dtype} on {input.device}, "
            f"got {residual.dtype} on {residual.device}"
        )


def check_add_relu_args(where: str, input: torch.Tensor, residual: torch.Tensor) -> None:
    check_activation(where, input, dtype=input.dtype, device=input.device)
    if not input.is_floating_point():
        raise TypeError(f"{where}: expected a floating-point input, got {input.dtype}")
    check_residual(where, residual, _shape(input), input)


def check_max_pool2d_args(
    where: str,
    input: torch.Tensor,
    kernel_size: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    ceil_mode: bool,
    dtype: torch.dtype | None = None,
) -> tuple:
    """Validate a max_pool2d call and return its output shape; the input floating-point, or of
    ``dtype`` when given."""
    check_activation(where, input, dtype=input.dtype, device=input.device)
    _check_dtype(where, input, dtype)
    _pair(where, "kernel_size", kernel_size, 1)
    _pair(where, "stride", stride, 1)
    _pair(where, "padding", padding, 0)
    _pair(where, "dilation", dilation, 1)
    if any(2 * p > k for p, k in zip(padding, kernel_size)):
        raise ValueError(
            f"{where}: padding {list(padding)} must be at most half of kernel_size {list(kernel_size)}"
        )
    out_h = pool2d_output_size(input.shape[2], kernel_size[0], stride[0], padding[0], dilation[0], ceil_mode)
    out_w = pool2d_output_size(input.shape[3], kernel_size[1], stride[1], padding[1], dilation[1], ceil_mode)
    _spatial_output(where, input, out_h, out_w)
    return (input.shape[0], input.shape[1], out_h, out_w)


def _check_dtype(where: str, input: torch.Tensor, dtype: torch.dtype | None) -> None:
    if dtype is None and not input.is_floating_point():
        raise TypeError(f"{where}: expected a floating-point input, got {input.dtype}")
    if dtype is not None and input.dtype != dtype:
        raise TypeError(f"{where}: expected a {dtype} input, got {input.dtype}")


def check_global_avg_pool_args(where: str, input: torch.Tensor, dtype: torch.dtype | None = None) -> tuple:
    """Validate a global_avg_pool call and return its output shape (N, C); the input
    floating-point, or of ``dtype`` when given."""
    check_activation(where, input, dtype=input.dtype, device=input.device)
    _check_dtype(where, input, dtype)
    if input.shape[2] == 0 or input.shape[3] == 0:
        raise ValueError(f"{where}: expected a non-empty H x W plane, got shape {_shape(input)}")
    return (input.shape[0], input.shape[1])


# -- int8 ------------------------------------------------------------------------------


def _check_zero_point(where: str, name: str, zero_point: int) -> None:
    if not 0 <= zero_point <= 255:
        raise ValueError(f"{where}: expected {name} in 0..255 (a uint8 zero point), got {zero_point}")


def check_quantize_args(where: str, input: torch.Tensor, scale: float, zero_point: int) -> None:
    if not isinstance(input, torch.Tensor) or not input.is_floating_point():
        kind = input.dtype if isinstance(input, torch.Tensor) else type(input).__name__
        raise TypeError(f"{where}: expected a floating-point tensor to quantize, got {kind}")
    if not scale > 0 or scale == float("inf"):
        raise ValueError(f"{where}: expected a finite scale > 0, got {scale}")
    _check_zero_point(where, "zero_point", zero_point)


def _check_per_channel(where: str, name: str, t: torch.Tensor, c_out: int, dtype: torch.dtype, device) -> None:
    if _shape(t) != (c_out,) or t.dtype != dtype or t.device != device:
        raise ValueError(
            f"{where}: expected {name} of shape ({c_out},), dtype {dtype} on {device}; "
            f"got shape {_shape(t)}, dtype {t.dtype} on {t.device}"
        )


def check_int8_conv2d_args(
    where: str,
    input: torch.Tensor,
    weight: torch.Tensor,
    multiplier: torch.Tensor,
    bias: torch.Tensor,
    compensation: torch.Tensor,
    residual: torch.Tensor | None,
    residual_zero_point: int,
    input_zero_point: int,
    output_zero_point: int,
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    groups: int,
    weight_layout: str = weight_layouts.LOGICAL,
) -> tuple:
    """Validate an int8_conv2d call and return its output shape. The weight is int8 in the
    logical layout, or in a C++ CPU tier's "int8-blocked" layout (int8, or int16 where the
    tier widens it), whose C_in/groups is padded to a multiple of 4."""
    layout = weight_layouts.parse(weight_layout, where)
    if layout.tier is None:
        if weight.dim() != 4 or weight.dtype != torch.int8:
            raise TypeError(
                f"{where}: expected an int8 weight (C_out, C_in/groups, KH, KW), got {weight.dtype} of shape {_shape(weight)}"
            )
        c_out, c_in_per_group, kh, kw = weight.shape
    else:
        if "uint8" not in layout.activation_dtypes:
            raise TypeError(
                f"{where}: expected an int8 weight in the layout 'oihw' or '<tier>:int8-blocked', got a "
                f"{weight.dtype} weight laid out as {layout.name!r}"
            )
        if str(weight.dtype) != f"torch.{layout.dtype}":
            raise TypeError(
                f"{where}: expected an int8 weight laid out as {layout.name!r} to be torch.{layout.dtype}, "
                f"got {weight.dtype}"
            )
        c_out, padded, kh, kw = weight_layouts.geometry(where, layout, weight, bias, groups)
        # The packed weight's C_in/groups is rounded up to 4: the input's own count must round to it.
        given = input.shape[1] // groups if groups >= 1 and input.dim() == 4 else -1
        c_in_per_group = given if -(-given // 4) * 4 == padded else padded
    if groups < 1 or c_out % groups != 0:
        raise ValueError(f"{where}: groups={groups} must be >= 1 and divide C_out={c_out}")
    check_activation(where, input, dtype=torch.uint8, device=weight.device, channels=c_in_per_group * groups)
    _check_per_channel(where, "a multiplier", multiplier, c_out, torch.float32, weight.device)
    _check_per_channel(where, "a bias", bias, c_out, torch.float32, weight.device)
    _check_per_channel(where, "a compensation", compensation, c_out, torch.int32, weight.device)
    for name, zero_point in [("input_zero_point", input_zero_point), ("output_zero_point", output_zero_point),
                             ("residual_zero_point", residual_zero_point)]:  # fmt: skip
        _check_zero_point(where, name, zero_point)
    return _conv_output_shape(where, input, residual, c_out, kh, kw, stride, padding, dilation)
