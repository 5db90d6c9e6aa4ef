"""The onednn backend: bfloat16 convs through oneDNN's fused conv, for CPUs with AMX.

On CPUs with AMX (Intel Xeon 4th generation on), oneDNN's bf16 convolutions run on the tile
multiplies, several times faster than any AVX-512 kernel; torch exposes them with the fused
epilogue fastresnet needs (``mkldnn::_convolution_pointwise``: conv + bias, then ReLU, or
+ residual add + ReLU, in one call), which is what torch.compile's CPU freezing uses too.
So the fused conv here is that op, with its weight reordered once into oneDNN's blocked
format (per module, on its first call: the packed tensor is opaque and cannot be saved, so
it is kept beside the weight, not in the state dict). Pools and add + ReLU are the reference
ops, which run bf16 natively.
"""

from __future__ import annotations

import weakref
from typing import Sequence

import torch

from . import checks, reference, schemas

BACKEND = "onednn"

# id(weight) -> (a weak reference to it, its version, the packed oneDNN tensor): reordered
# once, dropped with the weight. (Tensors cannot be the keys of a WeakKeyDictionary: it
# compares keys with ==, which tensors compute elementwise.)
_PACKED: dict[int, tuple[weakref.ref, int, torch.Tensor]] = {}


def _where(op: str) -> str:
    return schemas.qualname(BACKEND, op)


def _forget(key: int, ref: weakref.ref) -> None:
    if key in _PACKED and _PACKED[key][0] is ref:
        del _PACKED[key]


def _packed_weight(weight: torch.Tensor, input: torch.Tensor, stride, padding, dilation, groups) -> torch.Tensor:
    key = id(weight)
    # Inference tensors (made under torch.inference_mode) keep no version counter: for them a
    # change in place goes unseen, as the weights of an optimized model are not to be changed.
    version = -1 if weight.is_inference() else weight._version
    entry = _PACKED.get(key)
    if entry is None or entry[0]() is not weight or entry[1] != version:
        packed = torch._C._nn.mkldnn_reorder_conv2d_weight(
            weight.contiguous(memory_format=torch.channels_last).to_mkldnn(),
            list(padding), list(stride), list(dilation), groups, list(input.shape),
        )  # fmt: skip
        ref = weakref.ref(weight, lambda ref, key=key: _forget(key, ref))
        entry = _PACKED[key] = (ref, version, packed)
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
    w = _packed_weight(weight, x, stride, padding, dilation, groups)
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


def register() -> schemas.FusedOps:
    """Define the onednn ops (once) and return them: the conv here, the rest the reference's."""
    if schemas.define_backend_ops(BACKEND):
        for op in schemas.SCHEMAS:
            kernel = conv2d_bias_act if op == "conv2d_bias_act" else getattr(reference, op)
            torch.library.impl(_where(op), "CPU", kernel)
    return schemas.backend_ops(BACKEND)
