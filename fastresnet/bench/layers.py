"""Per layer: each fused conv timed against the eager conv + BN (+ add) + ReLU it replaces."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..explain import explain
from ..nn import FusedConv2d
from ..ops import checks
from ..rewrite.fold_bn import is_batchnorm
from .runner import measure_interleaved


@dataclass
class LayerTiming:
    module: str
    replaces: str
    shape: str
    gflop: float
    eager_ms: float
    fused_ms: float

    @property
    def speedup(self) -> float:
        return self.eager_ms / self.fused_ms

    @property
    def fused_gflops_per_s(self) -> float:
        return self.gflop / (self.fused_ms / 1e3)


def _eager_equivalent(original: nn.Module, replaces: list[str]):
    """conv -> bn -> (+ residual) -> relu, with the original model's own modules."""
    conv = original.get_submodule(replaces[0])
    bn, add, relu = None, False, False
    for name in replaces[1:]:
        if name == "add":
            add = True
        elif name.startswith("F.relu") or isinstance(original.get_submodule(name), nn.ReLU):
            relu = True
        elif is_batchnorm(original.get_submodule(name)):
            bn = original.get_submodule(name)

    def run(x, residual=None):
        y = conv(x)
        if bn is not None:
            y = bn(y)
        if add:
            y = y + residual
        return torch.relu(y) if relu else y

    return run


def time_layers(original: nn.Module, optimized: nn.Module, x: torch.Tensor, rounds: int, warmup: int) -> list[LayerTiming]:
    """Capture every fused conv's inputs in one forward pass, then time each layer alone."""
    captured = {}
    names = {module: name for name, module in optimized.named_modules()}

    def capture(module, args):
        captured[names[module]] = tuple(a.clone() if isinstance(a, torch.Tensor) else a for a in args)

    hooks = [m.register_forward_pre_hook(capture) for m in optimized.modules() if isinstance(m, FusedConv2d)]
    try:
        with torch.inference_mode():
            optimized(x)
    finally:
        for hook in hooks:
            hook.remove()
    timings = []
    with torch.inference_mode():
        for row in explain(optimized).info.fused:
            if row.module not in captured or "conv" not in row.pattern:
                continue
            fused = optimized.get_submodule(row.module)
            args = captured[row.module]
            if fused.entry_channels_last:
                args = (args[0].contiguous(memory_format=torch.channels_last), *args[1:])
            eager = _eager_equivalent(original, row.replaces)
            eager_args = tuple(a.to(original_dtype(original)) if isinstance(a, torch.Tensor) else a for a in args)
            samples = measure_interleaved(
                {"eager": lambda: eager(*eager_args), "fused": lambda: fused(*args)}, rounds=rounds, warmup=warmup
            )
            (kh, kw), c_in_g = fused.kernel_size, fused.in_channels // fused.groups
            x, residual = args[0], (args[1] if len(args) > 1 else None)
            out_shape = checks.check_conv2d_args(
                row.module, x, fused.weight, fused.bias, residual, fused.stride, fused.padding, fused.dilation,
                fused.groups, fused.weight_layout,
            )
            gflop = 2 * math.prod(out_shape) * c_in_g * kh * kw / 1e9
            shape = f"{fused.in_channels}->{fused.out_channels} {kh}x{kw}/s{fused.stride[0]} g{fused.groups} @ {tuple(args[0].shape[2:])}"
            timings.append(
                LayerTiming(row.module, " + ".join(row.replaces), shape, gflop,
                            samples["eager"].p50 * 1e3, samples["fused"].p50 * 1e3)
            )  # fmt: skip
    return timings


def original_dtype(model: nn.Module) -> torch.dtype:
    return next(model.parameters()).dtype


def markdown(timings: list[LayerTiming], title: str) -> str:
    lines = [
        f"## Per layer: {title} (each fused conv vs the eager ops it replaces; medians)",
        "",
        "| fused module | shape | GFLOP | eager ms | fused ms | speedup | fused GFLOP/s | replaces |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for t in timings:
        lines.append(
            f"| {t.module} | {t.shape} | {t.gflop:.3f} | {t.eager_ms:.3f} | {t.fused_ms:.3f} | {t.speedup:.2f}x "
            f"| {t.fused_gflops_per_s:.1f} | {t.replaces} |"
        )
    return "\n".join(lines) + "\n"


def plot(timings: list[LayerTiming], path) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no per-layer plot written"
    figure, axes = plt.subplots(figsize=(max(6, 0.25 * len(timings) + 2), 4))
    axes.bar(range(len(timings)), [t.fused_ms for t in timings], label="fused")
    axes.plot(range(len(timings)), [t.eager_ms for t in timings], "k.", label="eager")
    axes.set_xlabel("fused conv, in model order")
    axes.set_ylabel("ms (median)")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return None
