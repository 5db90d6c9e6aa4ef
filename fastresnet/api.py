"""optimize(): check the model, fold and swap on a copy, and pick the backend."""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from . import cpu_conv_choice
from .backends import cpu_kernels_backend, select_backend
from .explain import INFO_ATTRIBUTE, OptimizationInfo
from .nn.dtype_boundary import add_dtype_boundary
from .quantization import quantize
from .rewrite import Rewriter

SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
DTYPE_NAMES = {
    "float32": torch.float32, "fp32": torch.float32, "float": torch.float32,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
}  # fmt: skip


def optimize(
    model: nn.Module,
    backend: str = "auto",
    dtype: torch.dtype | str | None = None,
    inplace: bool = False,
    conv_algorithm: str = "auto",
    calibration=None,
) -> nn.Module:
    """Fold every BatchNorm into its conv and swap ResNet patterns for fused kernels.

    Args:
        model: an eval-mode torchvision ResNet, or any model containing ResNet blocks.
        backend: "auto" (the best that can run on the model's device, or the one named by
            FASTRESNET_BACKEND) or a name from ``available_backends()``.
        dtype: float32, float16, bfloat16 or int8; default: the model's own floating dtype.
            int8 is fastresnet.quantize(model, calibration) (post-training quantization).
            Folding is computed in float64 and cast once. In float16 or bfloat16 the model
            still takes float32 input (converted once, on entry) and returns its output in
            the input's dtype, so an fp32 pipeline switches with this argument alone.
        inplace: rewrite ``model`` itself; by default it is copied and left untouched.
        conv_algorithm: how the C++ CPU kernels may compute 3x3 stride-1 convs: "auto" (the
            fastest measured per layer: Winograd F(4x4) or F(2x2) where they pay, direct
            elsewhere), "winograd2x2" (never F(4x4), whose error is 10-45x eager's per
            layer) or "direct" (eager-level error). Other backends run every conv direct.
        calibration: for int8 only: an iterable of input batches (see fastresnet.quantize).

    Returns the optimized module; ``fastresnet.explain()`` says what was done to it.
    """
    if dtype in (torch.int8, "int8"):
        if conv_algorithm != cpu_conv_choice.AUTO:
            raise ValueError("conv_algorithm applies to the float kernels; int8 convs run direct")
        return quantize(model, calibration, backend=backend, inplace=inplace)
    if calibration is not None:
        raise ValueError("calibration data is for dtype=torch.int8; the float dtypes need none")
    device = check_inference_model(model)
    dtype = _resolve_dtype(dtype, model)
    cpu_conv_choice.check_algorithm(conv_algorithm)
    chosen, notes = select_backend(backend, device, dtype)
    note = chosen.choice_note()  # the C++ CPU kernels' raises if FASTRESNET_CPU_ISA was refused
    if note:
        notes.append(note)
    if chosen is not cpu_kernels_backend() and conv_algorithm != cpu_conv_choice.AUTO:
        notes.append(f"conv_algorithm={conv_algorithm!r} has no effect on {chosen.name}: it runs every conv direct")
    target = model if inplace else copy.deepcopy(model)
    with torch.no_grad():
        optimized, fused, eager = Rewriter(target, chosen, dtype, device, conv_algorithm).run()
        optimized.to(dtype)
    if dtype != torch.float32:
        add_dtype_boundary(optimized)
        notes.append(
            f"input of another floating dtype (e.g. float32) is converted to {_dtype_name(dtype)} once, on entry; "
            "the output comes back in the input's dtype"
        )
    if not fused:
        warnings.warn(
            "fastresnet.optimize(): nothing in this model was recognised, so it runs eagerly; "
            "fastresnet.explain() says why",
            stacklevel=2,
        )
    setattr(optimized, INFO_ATTRIBUTE, OptimizationInfo(chosen.name, dtype, device, fused, eager, notes))
    return optimized


def check_inference_model(model: nn.Module) -> torch.device:
    """Refuse what optimize() and quantize() cannot take; the model's device."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"optimize() expects a torch.nn.Module, got {type(model).__name__}")
    if isinstance(getattr(model, INFO_ATTRIBUTE, None), OptimizationInfo):
        raise ValueError("this model was already optimized by fastresnet; optimize the original model instead")
    training = [name or "(model)" for name, m in model.named_modules() if m.training]
    if training:
        raise ValueError(
            "optimize() folds BatchNorm into the convolutions using the running statistics, "
            "which needs an inference model: call model.eval() first "
            f"({len(training)} modules are in training mode, e.g. {', '.join(training[:3])})"
        )
    return _model_device(model)


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _model_device(model: nn.Module) -> torch.device:
    devices = {t.device for t in [*model.parameters(), *model.buffers()]}
    if len(devices) > 1:
        raise ValueError(
            f"optimize() expects a model on one device, got tensors on {sorted(str(d) for d in devices)}"
        )
    return devices.pop() if devices else torch.device("cpu")


def _resolve_dtype(dtype: torch.dtype | str | None, model: nn.Module) -> torch.dtype:
    if dtype is None:
        floating = [p.dtype for p in model.parameters() if p.is_floating_point()]
        return floating[0] if floating and floating[0] in SUPPORTED_DTYPES else torch.float32
    resolved = DTYPE_NAMES.get(dtype) if isinstance(dtype, str) else dtype
    if resolved not in SUPPORTED_DTYPES:
        valid = ", ".join(_dtype_name(d) for d in SUPPORTED_DTYPES)
        raise ValueError(f"unsupported dtype {dtype!r}; valid dtypes are {valid}, int8 (with calibration=...)")
    return resolved
