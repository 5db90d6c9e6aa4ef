"""FusedConv2d: a BN-folded convolution with bias, optional residual and ReLU in one op."""

from __future__ import annotations

from typing import Callable

import torch

from ..ops import checks
from ..ops import weight_layout as weight_layouts
from .op_holder import OpHolder


class FusedConv2d(OpHolder):
    """``act(conv2d(x, weight) + bias (+ residual))`` through one backend op.

    Inference only: the folded weight and bias are buffers, not parameters. The weight is in
    the layout its backend reads, named by ``weight_layout`` (ops/weight_layout.py) and passed
    to the op with it; the conv's geometry comes from the original conv and is checked against
    the weight once, here. A model saved with a CPU tier's layout and loaded where that tier
    cannot run gets its weights re-laid out for the tier that runs here (see ``__setstate__``).
    ``entry_name`` is set on the model's first fused conv so that a wrong input is reported
    in terms of the model ("expected 3 input channels") before any kernel runs;
    ``entry_channels_last`` makes it convert the input to channels_last once, for backends
    that keep NHWC activations through the network.
    """

    def __init__(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor,
        *,
        in_channels: int,
        kernel_size: tuple[int, int],
        stride: tuple[int, int],
        padding: tuple[int, int],
        dilation: tuple[int, int],
        groups: int,
        relu: bool,
        op: Callable,
        backend: str,
        weight_layout: str = weight_layouts.LOGICAL,
    ) -> None:
        super().__init__(op, backend)
        self.weight_layout = weight_layout
        self.register_buffer("weight", weight)
        self.register_buffer("bias", bias)
        self.stride, self.padding, self.dilation = tuple(stride), tuple(padding), tuple(dilation)
        self.groups = groups
        self.in_channels, self.out_channels, self.kernel_size = in_channels, bias.shape[0], tuple(kernel_size)
        self.layout = weight_layouts.parse(weight_layout, "FusedConv2d")
        expected = (self.out_channels, in_channels // groups, *self.kernel_size)
        got = weight_layouts.geometry("FusedConv2d", self.layout, weight, bias, groups)
        if tuple(got) != expected:
            raise ValueError(
                f"FusedConv2d: the weight laid out as {weight_layout!r} holds a conv of (C_out, C_in/groups, KH, KW) = "
                f"{tuple(got)}, expected {expected}"
            )
        self.relu = relu
        self.entry_name: str | None = None
        self.entry_channels_last = False

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        if self.entry_name is not None:
            checks.check_activation(
                f"optimized model input (first fused layer {self.entry_name!r})",
                x,
                dtype=self.bias.dtype,  # the activations' (a Winograd weight is float32 in a bf16 model)
                device=self.bias.device,
                channels=self.in_channels,
            )
            if self.entry_channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
        return self.op(
            x,
            self.weight,
            self.bias,
            residual,
            self.stride,
            self.padding,
            self.dilation,
            self.groups,
            self.relu,
            self.weight_layout,
        )

    @property
    def algorithm(self) -> str:
        """"direct", or "winograd F(2x2,3x3)" / "winograd F(4x4,3x3)": what the layout says."""
        return self.layout.algorithm

    @property
    def cpu_tier(self) -> str | None:
        """The CPU tier whose kernels read the weight, or None for the logical layout."""
        return self.layout.tier

    def _apply(self, fn, recurse=True):
        # A packed weight's dtype is its layout's (a Winograd weight stays float32 in a bf16
        # model), so a cast of the model moves it but never converts it: a weight cast to a
        # dtype its kernels do not read would be refused at the next call, or worse, rounded.
        if self.layout.tier is None:
            return super()._apply(fn, recurse)
        weight = self._buffers.pop("weight")
        try:
            super()._apply(fn, recurse)
        finally:
            self._buffers["weight"] = weight.to(self.bias.device)
        return self

    def __getstate__(self):
        state = super().__getstate__()
        del state["layout"]  # parsed again on load, by whichever build loads it
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        self.layout = weight_layouts.parse(self.weight_layout, "FusedConv2d")
        if self.layout.tier is None:
            return
        from .. import _ext, backends  # here, not at import: backends imports this package

        if _ext.tier_runs_here(self.layout.tier):
            return
        # Saved where another tier ran: back to the logical weight, then this machine's layout,
        # no less accurate than the saved one (a direct conv stays direct, F(2x2) never becomes F(4x4)).
        logical = weight_layouts.unpack(self.weight, self.weight_layout, self.out_channels, self.groups)
        logical = logical.to(self.bias.dtype)  # the layouts are chosen for the activations' dtype
        algorithm = {None: "direct", 2: "winograd2x2", 4: "auto"}[self.layout.winograd_tile]
        self.weight, self.weight_layout, _ = backends.cpu_kernels_backend().prepare_weight(
            logical, self.groups, self.stride, self.dilation, algorithm
        )
        self.layout = weight_layouts.parse(self.weight_layout, "FusedConv2d")

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, dilation={self.dilation}, groups={self.groups}, "
            f"relu={self.relu}, backend={self.backend!r}, dtype={self.bias.dtype}, "
            f"weight_layout={self.weight_layout!r}"
        )
