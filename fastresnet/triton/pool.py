"""Max pooling, global average pooling and the standalone add + ReLU, in Triton.

All three address their tensors through strides, so NHWC and NCHW both work; programs
tile pixels x channels so that NHWC loads along the channel axis are contiguous.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..ops import checks
from ..ops.meta import output_memory_format

BLOCK_PIXELS = 32
BLOCK_CHANNELS = 32


@triton.jit
def max_pool2d_kernel(
    x_ptr, y_ptr, N, C, H, W, OH, OW,
    sxn, sxc, sxh, sxw, syn, syc, syh, syw,
    stride_h, stride_w, pad_h, pad_w, dil_h, dil_w,
    KH: tl.constexpr, KW: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr,
):  # fmt: skip
    offs_p = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    offs_c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    p_ok = offs_p < N * OH * OW
    c_ok = offs_c < C
    ow = offs_p % OW
    oh = (offs_p // OW) % OH
    batch = (offs_p // (OW * OH)).to(tl.int64)
    x_rows = x_ptr + batch * sxn
    best = tl.full((BLOCK_P, BLOCK_C), float("-inf"), tl.float32)
    for kh in tl.static_range(KH):
        ih = oh * stride_h - pad_h + kh * dil_h
        for kw in tl.static_range(KW):
            iw = ow * stride_w - pad_w + kw * dil_w
            ok = p_ok & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
            v = tl.load(
                (x_rows + ih * sxh + iw * sxw)[:, None] + offs_c[None, :] * sxc,
                mask=ok[:, None] & c_ok[None, :],
                other=float("-inf"),
            )
            best = tl.maximum(best, v.to(tl.float32), propagate_nan=tl.PropagateNan.ALL)
    y_rows = y_ptr + batch * syn + oh * syh + ow * syw
    tl.store(y_rows[:, None] + offs_c[None, :] * syc, best.to(y_ptr.dtype.element_ty), mask=p_ok[:, None] & c_ok[None, :])


@triton.jit
def global_avg_pool_kernel(
    x_ptr, y_ptr, C, H, W, sxn, sxc, sxh, sxw, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr
):  # fmt: skip
    batch = tl.program_id(0).to(tl.int64)
    offs_c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    c_ok = offs_c < C
    total = tl.zeros((BLOCK_P, BLOCK_C), dtype=tl.float32)
    for p0 in range(0, H * W, BLOCK_P):
        p = p0 + tl.arange(0, BLOCK_P)
        ptrs = x_ptr + batch * sxn + ((p // W) * sxh + (p % W) * sxw)[:, None] + offs_c[None, :] * sxc
        total += tl.load(ptrs, mask=(p < H * W)[:, None] & c_ok[None, :], other=0.0).to(tl.float32)
    mean = tl.sum(total, axis=0) / (H * W)
    tl.store(y_ptr + batch * C + offs_c, mean.to(y_ptr.dtype.element_ty), mask=c_ok)


@triton.jit
def add_relu_kernel(
    a_ptr, b_ptr, y_ptr, C, H, W, TOTAL,
    san, sac, sah, saw, sbn, sbc, sbh, sbw, syn, syc, syh, syw,
    BLOCK: tl.constexpr,
):  # fmt: skip
    # Walk the logical (n, h, w, c) order so NHWC tensors are read contiguously.
    i = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    ok = i < TOTAL
    c = i % C
    w = (i // C) % W
    h = (i // (C * W)) % H
    n = i // (C * W * H)
    a = tl.load(a_ptr + n * san + c * sac + h * sah + w * saw, mask=ok).to(tl.float32)
    b = tl.load(b_ptr + n * sbn + c * sbc + h * sbh + w * sbw, mask=ok).to(tl.float32)
    s = a + b
    s = tl.where(s < 0.0, 0.0, s)  # keeps NaN
    tl.store(y_ptr + n * syn + c * syc + h * syh + w * syw, s.to(y_ptr.dtype.element_ty), mask=ok)


def max_pool2d_launch(input, y, kernel_size, stride, padding, dilation):
    """(grid, args, constexprs, options) of one launch; the GPU compile check reuses it."""
    n, c, h, w = input.shape
    grid = (triton.cdiv(n * y.shape[2] * y.shape[3], BLOCK_PIXELS), triton.cdiv(c, BLOCK_CHANNELS))
    args = [
        input, y, n, c, h, w, y.shape[2], y.shape[3], *input.stride(), *y.stride(),
        stride[0], stride[1], padding[0], padding[1], dilation[0], dilation[1],
    ]  # fmt: skip
    constexprs = dict(KH=kernel_size[0], KW=kernel_size[1], BLOCK_P=BLOCK_PIXELS, BLOCK_C=BLOCK_CHANNELS)
    return grid, args, constexprs, {}


def global_avg_pool_launch(input, y):
    n, c, h, w = input.shape
    grid = (n, triton.cdiv(c, BLOCK_CHANNELS))
    return grid, [input, y, c, h, w, *input.stride()], dict(BLOCK_P=BLOCK_PIXELS, BLOCK_C=BLOCK_CHANNELS), {}


ADD_RELU_BLOCK = 1024


def add_relu_launch(input, residual, y):
    n, c, h, w = input.shape
    grid = (triton.cdiv(y.numel(), ADD_RELU_BLOCK),)
    args = [input, residual, y, c, h, w, y.numel(), *input.stride(), *residual.stride(), *y.stride()]
    return grid, args, dict(BLOCK=ADD_RELU_BLOCK), {}


def _run(kernel, launch):
    grid, args, constexprs, options = launch
    kernel[grid](*args, **constexprs, **options)


def max_pool2d(input, kernel_size, stride, padding, dilation, ceil_mode):
    shape = checks.check_max_pool2d_args(
        "fastresnet::triton_max_pool2d", input, kernel_size, stride, padding, dilation, ceil_mode
    )
    y = torch.empty(shape, dtype=input.dtype, device=input.device, memory_format=output_memory_format(input))
    if y.numel():
        _run(max_pool2d_kernel, max_pool2d_launch(input, y, kernel_size, stride, padding, dilation))
    return y


def global_avg_pool(input):
    shape = checks.check_global_avg_pool_args("fastresnet::triton_global_avg_pool", input)
    y = torch.empty(shape, dtype=input.dtype, device=input.device)
    if y.numel():
        _run(global_avg_pool_kernel, global_avg_pool_launch(input, y))
    return y


def add_relu(input, residual):
    checks.check_add_relu_args("fastresnet::triton_add_relu", input, residual)
    y = torch.empty_like(input, memory_format=output_memory_format(input))
    if y.numel():
        _run(add_relu_kernel, add_relu_launch(input, residual, y))
    return y
