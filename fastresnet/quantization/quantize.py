"""quantize(): post-training int8 quantization of the fused model, calibrated on the user's batches.

The order is the fold's: BatchNorm is folded into each conv in float64 first; the int8 weight
comes from that folded weight, symmetric per output channel (scale = max |w| / 127, so -128 is
never used and every channel's range is symmetric; or max |w| / 64 with 7-bit weights, the
default on CPUs whose int8 kernels are fast only for those: weight_bits); the bias stays float and is applied in the
requantizing epilogue. Activations are uint8 per tensor, ranges from calibration (ranges.py,
calibrate.py). What stays float: the layers after the global average pool (the classifier),
which run in float32 on the dequantized mean, and whatever optimize() leaves eager.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterable

import torch
from torch import nn

from ..backends import select_backend
from ..explain import INFO_ATTRIBUTE, OptimizationInfo
from ..nn import FusedConv2d, FusedGlobalAvgPool2d, FusedMaxPool2d
from ..nn.int8 import DequantizeGlobalAvgPool2d, QuantizedConv2d, QuantizedMaxPool2d, QuantizeInput
from ..nn.op_holder import OpHolder
from ..rewrite import Rewriter
from .calibrate import Calibration, calibrate
from .ranges import check_estimator


def quantize(
    model: nn.Module,
    calibration: Iterable,
    *,
    backend: str = "auto",
    range_estimator: str = "minmax",
    weight_bits: int | None = None,
    inplace: bool = False,
) -> nn.Module:
    """An int8 copy of ``model`` (an eval-mode ResNet on CPU), calibrated on ``calibration``.

    Args:
        calibration: an iterable of input batches, (N, 3, H, W) float tensors, or of tuples
            or lists whose first element is one (what a DataLoader of (image, label) yields):
            a few hundred images, as preprocessed for the model, are typical.
        backend: "auto" or a backend with int8 kernels (``available_backends()``).
        range_estimator: "minmax" (default) or "mse": how each activation's range is taken
            from the calibration data (fastresnet/quantization/ranges.py says which measured
            better where).
        weight_bits: 8 (weights in -127..127) or 7 (-64..64). By default the backend's choice:
            7 on CPUs without VNNI, where the C++ kernels multiply by VPMADDUBSW, whose int16
            pair sums hold u8 x s7 products exactly but not u8 x s8 (8-bit weights run there
            too, exactly, on kernels about half as fast: BENCHMARKS.md); 8 elsewhere.
        inplace: rewrite ``model`` itself; by default it is copied and left untouched.

    The result takes float input (quantized once, on entry) and returns float32 logits;
    ``fastresnet.explain()`` says what runs in int8 and what stays in float, and why.
    """
    from ..api import check_inference_model  # here: api imports this module

    device = check_inference_model(model)
    if device.type != "cpu":
        raise ValueError(f"int8 runs on CPU; the model is on {device}")
    check_estimator(range_estimator)
    if weight_bits not in (None, 7, 8):
        raise ValueError(f"int8: weight_bits must be 7, 8 or None (the backend's choice), got {weight_bits!r}")
    batches = _batches(calibration)
    chosen, notes = select_backend(backend, device, torch.int8)
    bits = weight_bits or chosen.int8_weight_bits()
    target = model if inplace else copy.deepcopy(model)
    reference = select_backend("reference", device, torch.float64)[0]
    with torch.no_grad():
        folded, fused, eager = Rewriter(target, reference, torch.float64, device).run()
        folded.to(torch.float64)
        int8 = copy.deepcopy(folded).float()  # calibrated in float32, then rewritten in place
    calib = calibrate(int8, [x.float() for x in batches], range_estimator)
    _convert(int8, folded, calib, chosen, bits)
    rows = [dataclasses.replace(row, op=_int8_op(int8, row.module, row.op)) for row in fused]
    notes += [
        f"int8: calibrated on {calib.batches} batches ({sum(len(x) for x in batches)} images), "
        f"activation ranges by {range_estimator!r}; uint8 activations per tensor (zero point 0 after a ReLU, "
        "asymmetric for the input and the shortcut convs' outputs), int8 weights per output channel "
        f"(symmetric, from the float64 fold, in {bits} bits: {-_WEIGHT_LEVELS[bits]}..{_WEIGHT_LEVELS[bits]}"
        f"{', the default of these kernels' if weight_bits is None and bits == 7 else ''}), int32 sums, a float32 "
        "requantizing epilogue",
        "int8: the input is quantized once, on entry (NaN or infinite input is refused); the global average pool "
        "dequantizes to float32, and what follows it stays in float32 (the classifier: a small share of the "
        "work, and where int8 would cost the most accuracy)",
    ]
    notes += [note for note in [chosen.int8_note()] if note]
    setattr(int8, INFO_ATTRIBUTE, OptimizationInfo(chosen.name, torch.int8, device, rows, eager, notes))
    return int8


def _batches(calibration: Iterable) -> list[torch.Tensor]:
    if isinstance(calibration, torch.Tensor):
        calibration = [calibration]  # one batch
    if calibration is None or not isinstance(calibration, Iterable):
        raise TypeError(
            "int8 needs calibration data: an iterable of input batches (N, C, H, W), e.g. a DataLoader, "
            f"got {type(calibration).__name__}"
        )
    batches = []
    for i, item in enumerate(calibration):
        x = item[0] if isinstance(item, (tuple, list)) and item else item
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or not x.is_floating_point():
            got = f"{x.dtype} tensor of shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"int8 calibration batch {i}: expected a float tensor (N, C, H, W), got a {got}")
        if not torch.isfinite(x).all():
            raise ValueError(f"int8 calibration batch {i} holds NaN or infinite values")
        batches.append(x)
    if not batches:
        raise ValueError("int8 needs calibration data: the calibration iterable gave no batches")
    return batches


def _convert(model: nn.Module, folded: nn.Module, calib: Calibration, backend, weight_bits: int) -> None:
    """Swap every fused module of ``model`` for its int8 counterpart, in place."""
    ops, qp, wiring = backend.int8_ops(), calib.qparams, calib.wiring
    for name, module in list(model.named_modules()):
        if isinstance(module, FusedConv2d):
            if name not in wiring.conv_input:
                raise ValueError(f"int8: the conv {name} never ran on the calibration batches")
            source = folded.get_submodule(name)
            weight, weight_scale = _int8_weight(source.weight, weight_bits)
            residual = wiring.conv_residual.get(name)
            new = QuantizedConv2d(
                weight, weight_scale, source.bias,
                input=qp[wiring.conv_input[name]], output=qp[name], residual=qp[residual] if residual else None,
                stride=module.stride, padding=module.padding, dilation=module.dilation, groups=module.groups,
                relu=module.relu, op=ops.int8_conv2d, backend=backend.name, weight_layout=backend.int8_weight_layout(weight),
            )  # fmt: skip
            if name == calib.entry:
                entry = QuantizeInput(qp[wiring.conv_input[name]], op=ops.quantize, backend=backend.name,
                                      channels=module.in_channels)  # fmt: skip
                new = nn.Sequential(entry, new)
        elif isinstance(module, FusedMaxPool2d):
            new = QuantizedMaxPool2d(
                module.kernel_size, module.stride, module.padding, module.dilation, module.ceil_mode,
                op=ops.int8_max_pool2d, backend=backend.name,
            )  # fmt: skip
        elif isinstance(module, FusedGlobalAvgPool2d):
            new = DequantizeGlobalAvgPool2d(qp[wiring.pool_input[name]], op=ops.dequantize_global_avg_pool,
                                            backend=backend.name)  # fmt: skip
        elif isinstance(module, OpHolder):
            raise ValueError(f"int8: {name} ({type(module).__name__}) has no int8 form")
        else:
            continue
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, new)


# The largest |q| of a weight of each width: symmetric, so 8 bits never use -128.
_WEIGHT_LEVELS = {8: 127, 7: 64}


def _int8_weight(weight: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-output-channel int8 of a float64 weight, in ``bits`` bits: (int8 weight,
    float64 scales)."""
    levels = _WEIGHT_LEVELS[bits]
    w = weight.double().contiguous()
    amax = w.abs().amax(dim=(1, 2, 3))
    scale = torch.where(amax > 0, amax / levels, torch.ones_like(amax))
    q = torch.round(w / scale.view(-1, 1, 1, 1)).clamp_(-levels, levels).to(torch.int8)
    return q, scale


def _int8_op(model: nn.Module, name: str, float_op: str) -> str:
    module = model.get_submodule(name)
    if isinstance(module, nn.Sequential):  # the entry: quantize, then the conv
        return " + ".join(m.op._name.split("::")[1] for m in module)
    return module.op._name.split("::")[1] if isinstance(module, OpHolder) else float_op
