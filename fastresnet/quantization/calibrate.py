"""Calibration: run the fused float model on the user's batches and fix every uint8 tensor's
(scale, zero point).

The quantized tensors are the model's input and each fused conv's output; a max pool passes
its input's on (it is exact on uint8). Two kinds of passes, both through forward hooks on the
fused modules of a float32 model:

- ranges: every batch, once for min/max and once more for the histogram ("mse");
- wiring: one batch, following tensors by identity from the module that made them to the
  modules that read them, so that each conv learns whose quantization its input (and its
  residual) carries, and the global pool whose it dequantizes. A conv whose input comes from
  anything else (a layer left eager, a separate add) cannot take uint8: it is reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..nn import FusedConv2d, FusedGlobalAvgPool2d, FusedMaxPool2d
from ..nn.int8 import QParams
from .ranges import RangeObserver

INPUT = "(input)"  # the key of the model's input among the quantized tensors


@dataclass
class Wiring:
    """Whose quantization each module reads: a key of Calibration.qparams (a conv's name, or INPUT)."""

    conv_input: dict[str, str] = field(default_factory=dict)
    conv_residual: dict[str, str] = field(default_factory=dict)
    pool_input: dict[str, str] = field(default_factory=dict)  # global average pools


@dataclass
class Calibration:
    qparams: dict[str, QParams]
    wiring: Wiring
    entry: str  # the name of the conv that reads the model's input
    batches: int


def calibrate(model: nn.Module, batches: list[torch.Tensor], estimator: str) -> Calibration:
    """``model``: a fused float32 model (reference backend); ``batches``: its inputs."""
    convs = {name: m for name, m in model.named_modules() if isinstance(m, FusedConv2d)}
    entries = [name for name, m in convs.items() if m.entry_name is not None]
    if len(entries) != 1:
        raise ValueError("int8: the model has no fused first conv to quantize its input at")
    entry = entries[0]
    observers = {key: RangeObserver() for key in [INPUT, *convs]}

    def observe(method: str) -> None:
        handles = [convs[entry].register_forward_pre_hook(lambda m, args: getattr(observers[INPUT], method)(args[0]))]
        for name, conv in convs.items():
            hook = lambda m, args, out, name=name: getattr(observers[name], method)(out)  # noqa: E731
            handles.append(conv.register_forward_hook(hook))
        try:
            with torch.no_grad():
                for x in batches:
                    model(x)
        finally:
            for handle in handles:
                handle.remove()

    observe("observe_range")
    if estimator == "mse":
        observe("observe_histogram")
    qparams = {key: observer.qparams(estimator) for key, observer in observers.items()}
    return Calibration(qparams, _wire(model, convs, entry, batches[0]), entry, len(batches))


def _wire(model: nn.Module, convs: dict[str, FusedConv2d], entry: str, x: torch.Tensor) -> Wiring:
    made_by: dict[int, str] = {}  # id(tensor) -> key of the quantization it carries
    alive: list[torch.Tensor] = []  # keeps every tensor seen, so that no id is reused meanwhile
    wiring = Wiring()

    def carries(t: torch.Tensor | None) -> str | None:
        return None if t is None else made_by.get(id(t))

    def made(t: torch.Tensor, key: str | None) -> None:
        if key is not None:
            made_by[id(t)] = key
            alive.append(t)

    def conv_pre(name):
        def hook(module, args):
            if name == entry:
                made(args[0], INPUT)
            wiring.conv_input[name] = carries(args[0])
            residual = args[1] if len(args) > 1 else None
            if residual is not None:
                wiring.conv_residual[name] = carries(residual)

        return hook

    handles = []
    for name, conv in convs.items():
        handles.append(conv.register_forward_pre_hook(conv_pre(name)))
        handles.append(conv.register_forward_hook(lambda m, args, out, name=name: made(out, name)))
    for name, module in model.named_modules():
        if isinstance(module, FusedMaxPool2d):
            handles.append(module.register_forward_hook(lambda m, args, out: made(out, carries(args[0]))))
        elif isinstance(module, FusedGlobalAvgPool2d):
            hook = lambda m, args, name=name: wiring.pool_input.__setitem__(name, carries(args[0]))  # noqa: E731
            handles.append(module.register_forward_pre_hook(hook))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    unwired = [name for name, key in {**wiring.conv_input, **wiring.conv_residual, **wiring.pool_input}.items() if key is None]
    if unwired:
        raise ValueError(
            "int8: these layers read a tensor that no quantized layer made (it comes from a layer left in float, "
            f"or from an add that was not fused into a conv): {', '.join(sorted(set(unwired)))}; "
            "fastresnet.explain(fastresnet.optimize(model)) lists what stays eager"
        )
    return wiring
