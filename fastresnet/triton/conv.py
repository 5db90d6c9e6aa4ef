"""Implicit-GEMM convolution with the fused epilogue, in Triton.

The GEMM view of a conv: M = N*OH*OW output pixels, N = C_out/groups output channels,
K = KH*KW*C_in/groups. Each program computes a BLOCK_M x BLOCK_N output tile of one group.
The reduction is one flat loop over (tap, input-channel chunk) steps, each chunk inside one
of the KH*KW taps; zero padding is a load mask. Before the single store the epilogue adds the bias and the optional
residual, applies the optional ReLU and casts to the output dtype, so a ResNet block's add
and ReLU cost no extra pass over memory.

Every tensor is addressed through its strides: any layout is correct. NHWC (channels_last)
activations with weights stored as (C_out, KH, KW, C_in) make the channel loads contiguous,
which is the layout the Triton backend keeps through the network.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..ops import checks
from ..ops.meta import output_memory_format
from . import configs


@triton.jit
def conv2d_bias_act_kernel(
    x_ptr, w_ptr, b_ptr, r_ptr, y_ptr,
    N, H, W, OH, OW, C_IN_G, C_OUT_G,
    sxn, sxc, sxh, sxw,
    swo, swc, swh, sww,
    syn, syc, syh, syw,
    srn, src, srh, srw,
    stride_h, stride_w, pad_h, pad_w, dil_h, dil_w,
    KH: tl.constexpr, KW: tl.constexpr,
    HAS_RESIDUAL: tl.constexpr, RELU: tl.constexpr, INPUT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    group = tl.program_id(2)

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    m_ok = offs_m < N * OH * OW
    n_ok = offs_n < C_OUT_G

    ow = offs_m % OW
    oh = (offs_m // OW) % OH
    batch = (offs_m // (OW * OH)).to(tl.int64)  # int64: batch * stride can pass 2**31
    c_out = group * C_OUT_G + offs_n

    x_rows = x_ptr + batch * sxn + (group * C_IN_G) * sxc
    w_cols = w_ptr + c_out * swo
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    # One flat loop over (tap, channel chunk), so Triton's pipeliner can overlap the loads
    # of the next step with the current dot; each chunk stays inside one tap.
    c_steps = tl.cdiv(C_IN_G, BLOCK_K)
    for step in range(KH * KW * c_steps):
        tap = step // c_steps
        kh = tap // KW
        kw = tap % KW
        c = (step % c_steps) * BLOCK_K + offs_k
        c_ok = c < C_IN_G
        ih = oh * stride_h - pad_h + kh * dil_h
        iw = ow * stride_w - pad_w + kw * dil_w
        pixel_ok = m_ok & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
        a = tl.load(
            (x_rows + ih * sxh + iw * sxw)[:, None] + c[None, :] * sxc,
            mask=pixel_ok[:, None] & c_ok[None, :],
            other=0.0,
        )
        b = tl.load(
            (w_cols + kh * swh + kw * sww)[None, :] + c[:, None] * swc,
            mask=c_ok[:, None] & n_ok[None, :],
            other=0.0,
        )
        acc = tl.dot(a, b, acc, input_precision=INPUT_PRECISION)

    acc += tl.load(b_ptr + c_out, mask=n_ok, other=0.0).to(tl.float32)[None, :]
    out_ok = m_ok[:, None] & n_ok[None, :]
    if HAS_RESIDUAL:
        r_rows = r_ptr + batch * srn + oh * srh + ow * srw
        acc += tl.load(r_rows[:, None] + c_out[None, :] * src, mask=out_ok, other=0.0).to(tl.float32)
    if RELU:
        acc = tl.where(acc < 0.0, 0.0, acc)  # keeps NaN, as torch.relu does
    y_rows = y_ptr + batch * syn + oh * syh + ow * syw
    tl.store(y_rows[:, None] + c_out[None, :] * syc, acc.to(y_ptr.dtype.element_ty), mask=out_ok)


def kernel_launch(x, weight, bias, residual, y, stride, padding, dilation, groups, relu, config):
    """(grid, args, constexprs, options) of one launch; the GPU compile check reuses it."""
    n, c_in, h, w = x.shape
    c_out, c_in_g, kh, kw = weight.shape
    _, _, oh, ow = y.shape
    r = residual if residual is not None else y  # never read when HAS_RESIDUAL is False
    grid = (triton.cdiv(n * oh * ow, config.block_m), triton.cdiv(c_out // groups, config.block_n), groups)
    args = [
        x, weight, bias, r, y,
        n, h, w, oh, ow, c_in_g, c_out // groups,
        *x.stride(), *weight.stride(), *y.stride(), *r.stride(),
        stride[0], stride[1], padding[0], padding[1], dilation[0], dilation[1],
    ]  # fmt: skip
    constexprs = dict(
        KH=kh, KW=kw, HAS_RESIDUAL=residual is not None, RELU=relu,
        INPUT_PRECISION=configs.input_precision(x.dtype),
        BLOCK_M=config.block_m, BLOCK_N=config.block_n, BLOCK_K=config.block_k,
    )  # fmt: skip
    return grid, args, constexprs, dict(num_warps=config.num_warps, num_stages=config.num_stages)


def launch(x, weight, bias, residual, y, stride, padding, dilation, groups, relu, config: configs.ConvConfig):
    """Run the kernel with one config, writing into ``y`` (already of the output's shape)."""
    grid, args, constexprs, options = kernel_launch(
        x, weight, bias, residual, y, stride, padding, dilation, groups, relu, config
    )
    conv2d_bias_act_kernel[grid](*args, **constexprs, **options)
    return y


def conv2d_bias_act(input, weight, bias, residual, stride, padding, dilation, groups, relu, weight_layout="oihw"):
    checks.check_logical_layout("fastresnet::triton_conv2d_bias_act", weight_layout)
    shape = checks.check_conv2d_args(
        "fastresnet::triton_conv2d_bias_act", input, weight, bias, residual, stride, padding, dilation, groups
    )
    y = torch.empty(shape, dtype=input.dtype, device=input.device, memory_format=output_memory_format(input))
    if y.numel() == 0:
        return y
    args = (input, weight, bias, residual, y, list(stride), list(padding), list(dilation), groups, relu)
    config = configs.choose_conv_config(args, launch)
    return launch(*args, config)
