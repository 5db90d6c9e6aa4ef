"""The onednn backend: bfloat16 and int8 convs through oneDNN's fused convs, for CPUs with AMX.

On CPUs with AMX (Intel Xeon 4th generation on), oneDNN's bf16 and int8 convolutions run on
the tile multiplies, several times faster than any AVX-512 kernel; torch exposes them with the
fused epilogues fastresnet needs, the ops torch.compile's CPU freezing and its int8 (PT2E, X86
Inductor quantizer) lowering use too:

- bfloat16: ``mkldnn::_convolution_pointwise``, conv + bias, then ReLU, or + residual + ReLU;
- int8: ``onednn::qconv2d_pointwise``, the int8 conv requantized to uint8 with ReLU, or with
  a uint8 residual added (oneDNN's "sum" post-op) before it.

Each conv's weight is reordered once into oneDNN's blocked format (per module, on its first
call: the packed tensor is opaque and cannot be saved, so it is kept beside the weight, not
in the state dict). Pools, add + ReLU and the int8 model's quantize and pools are the
reference ops (the bf16 ones run natively; the int8 ones are small memory-bound passes).
"""

from __future__ import annotations

import os
import weakref
from typing import Callable, Sequence

import torch

from .. import _ext
from . import checks, int8_reference, reference, schemas

BACKEND = "onednn"

# id(weight) -> (a weak reference to it, its version and what the reordering depends on, the
# packed oneDNN tensor): reordered once, dropped with the weight. (Tensors cannot be the keys of a
# WeakKeyDictionary: it compares keys with ==, which tensors compute elementwise.)
_PACKED: dict[int, tuple[weakref.ref, tuple, object]] = {}


def _where(op: str) -> str:
    return schemas.qualname(BACKEND, op)


def _forget(key: int, ref: weakref.ref) -> None:
    if key in _PACKED and _PACKED[key][0] is ref:
        del _PACKED[key]


def _packed_weight(weight: torch.Tensor, depends_on: tuple, reorder: Callable[[], object]) -> object:
    """``weight`` reordered by ``reorder``, once per weight: again if it changed in place, or
    if what the reordering ``depends_on`` (the conv's geometry, ...) is not what it was."""
    key = id(weight)
    # Inference tensors (made under torch.inference_mode) keep no version counter: for them a
    # change in place goes unseen, as the weights of an optimized model are not to be changed.
    signature = (-1 if weight.is_inference() else weight._version, *depends_on)
    entry = _PACKED.get(key)
    if entry is None or entry[0]() is not weight or entry[1] != signature:
        ref = weakref.ref(weight, lambda ref, key=key: _forget(key, ref))
        entry = _PACKED[key] = (ref, signature, reorder())
    return entry[2]


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
    where = _where("conv2d_bias_act")
    checks.check_logical_layout(where, weight_layout)
    checks.check_conv2d_args(where, input, weight, bias, residual, stride, padding, dilation, groups)
    if input.dtype != torch.bfloat16 or input.device.type != "cpu":
        raise TypeError(f"{where}: takes bfloat16 CPU tensors, got {input.dtype} on {input.device}")
    if residual is not None and groups > 1:
        # oneDNN's fused residual add falls back to an ATen kernel without bf16 for grouped
        # convs (torch 2.14); ResNets add residuals after ungrouped 1x1 convs, so this is rare.
        return reference.conv2d_bias_act(input, weight, bias, residual, stride, padding, dilation, groups, relu)
    x = input.contiguous(memory_format=torch.channels_last)
    w = _packed_weight(
        weight,
        (tuple(stride), tuple(padding), tuple(dilation), groups),
        lambda: torch._C._nn.mkldnn_reorder_conv2d_weight(
            weight.contiguous(memory_format=torch.channels_last).to_mkldnn(),
            list(padding), list(stride), list(dilation), groups, list(x.shape),
        ),
    )  # fmt: skip
    conv = torch.ops.mkldnn._convolution_pointwise
    if residual is None:
        out = conv(x, w, bias, list(padding), list(stride), list(dilation), groups, "relu" if relu else "none", [], "")
    else:
        other = residual.contiguous(memory_format=torch.channels_last)
        out = conv.binary(
            x, other, w, bias, list(padding), list(stride), list(dilation), groups, "add", None,
            "relu" if relu else None, [], "",
        )  # fmt: skip
    return out.contiguous(memory_format=reference.output_memory_format(input))


# oneDNN's instruction-set caps below VNNI (ONEDNN_MAX_CPU_ISA; DNNL_ the older name).
_CAPS_WITHOUT_VNNI = {"SSE41", "AVX", "AVX2", "AVX512_CORE"}


def int8_unsupported_reason() -> str | None:
    """Why oneDNN's int8 conv would answer wrongly here, or None. Without VNNI its kernels
    multiply u8 x s8 by VPMADDUBSW, whose int16 pair sums saturate on full-range int8 weights
    (measured: outputs off by up to 56 units with ONEDNN_MAX_CPU_ISA=AVX2); torch's own int8
    weights keep to 7 bits there, fastresnet's do not. (CPUs with AVX-VNNI but no AVX512_VNNI
    are refused too: not yet checked.)"""
    features = _ext.cpu_features()
    if not (features.get("avx512_vnni") or features.get("amx_int8")):
        return "this CPU has no AVX512_VNNI, without which oneDNN's int8 convs saturate in int16 (VPMADDUBSW)"
    for name in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        cap = os.environ.get(name, "").upper()
        if cap in _CAPS_WITHOUT_VNNI:
            return f"{name}={cap} keeps oneDNN below VNNI, where its int8 convs saturate in int16 (VPMADDUBSW)"
    return None


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
    """The int8 conv of ops/int8_reference.py through oneDNN's. Given an input scale of 1, a
    weight scale per channel of ``multiplier`` and an output scale of 1, oneDNN's requantization
    is the reference's: acc * multiplier + bias (+ residual_multiplier * (residual - its zero
    point)), ReLU, rounded to uint8 with the output zero point; it reads the padding as the
    input's zero point, as the reference does. It takes the input zero point itself, so it
    computes the compensation from it and the weight: the one given must be that (checked when
    the weight is reordered). Its answers may differ from the reference's by one unit where it
    orders or fuses the epilogue's float32 operations otherwise (seen: about one output in 10^5
    or fewer, with and without a residual); tests/test_onednn.py holds it to that."""
    where = _where("int8_conv2d")
    checks.check_logical_layout(where, weight_layout)
    checks.check_int8_conv2d_args(
        where, input, weight, multiplier, bias, compensation, residual, residual_zero_point,
        input_zero_point, output_zero_point, stride, padding, dilation, groups, weight_layout,
    )  # fmt: skip
    x = input.contiguous(memory_format=torch.channels_last)

    def reorder() -> tuple[torch.Tensor, torch.Tensor]:
        reason = int8_unsupported_reason()  # checked once per weight: the CPU and the cap do not change
        if reason:
            raise RuntimeError(f"{where}: {reason}")
        expected = input_zero_point * weight.to(torch.int64).sum(dim=(1, 2, 3))
        if not torch.equal(compensation.to(torch.int64), expected):
            raise ValueError(
                f"{where}: oneDNN computes the compensation itself, as input_zero_point x each output "
                "channel's weight sum; the compensation given is not that"
            )
        packed = torch.ops.onednn.qconv_prepack(
            weight, multiplier, 1.0, input_zero_point, list(stride), list(padding), list(dilation), groups, list(x.shape)
        )
        return packed, torch.zeros(weight.shape[0], dtype=torch.int64)  # the weight's zero points: symmetric

    depends_on = (tuple(stride), tuple(padding), tuple(dilation), groups, input_zero_point, compensation.data_ptr())
    w, weight_zero_points = _packed_weight(weight, depends_on, reorder)
    conv = torch.ops.onednn.qconv2d_pointwise
    if residual is None:
        out = conv(
            x, 1.0, input_zero_point, w, multiplier, weight_zero_points, bias, list(stride), list(padding),
            list(dilation), groups, 1.0, output_zero_point, torch.uint8, "relu" if relu else "none", [], "",
        )  # fmt: skip
    else:
        # oneDNN's "sum" writes its result over the residual: a copy, so the caller's stays as it was.
        accumulator = residual.contiguous(memory_format=torch.channels_last).clone()
        out = conv.binary(
            x, 1.0, input_zero_point, w, multiplier, weight_zero_points, accumulator, bias, list(stride),
            list(padding), list(dilation), groups, 1.0, output_zero_point, torch.uint8, residual_multiplier,
            residual_zero_point, "sum", 1.0, "relu" if relu else None, [], "",
        )  # fmt: skip
    return out.contiguous(memory_format=reference.output_memory_format(input))


def register() -> schemas.FusedOps:
    """Define the onednn ops (once) and return them: the conv here, the rest the reference's."""
    if schemas.define_backend_ops(BACKEND):
        for op in schemas.SCHEMAS:
            kernel = conv2d_bias_act if op == "conv2d_bias_act" else getattr(reference, op)
            torch.library.impl(_where(op), "CPU", kernel)
    return schemas.backend_ops(BACKEND)


def register_int8() -> schemas.Int8Ops:
    """Define the onednn int8 ops (once) and return them: the conv here, the rest the reference's."""
    if schemas.define_backend_ops(BACKEND, schemas.INT8_SCHEMAS):
        for op in schemas.INT8_SCHEMAS:
            kernel = int8_conv2d if op == "int8_conv2d" else getattr(int8_reference, op)
            torch.library.impl(_where(op), "CPU", kernel)
    return schemas.backend_ops(BACKEND, schemas.INT8_SCHEMAS)
