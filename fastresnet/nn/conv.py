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
    to the op with it; the conv's geometry is kept beside it. A model saved with a CPU tier's
    layout and loaded where that tier cannot run gets its weights re-laid out for the tier
    that runs here (see ``__setstate__``).
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
        self.out_channels, c_in_per_group, kh, kw = checks.conv_weight_geometry(
            "FusedConv2d", weight, bias, groups, weight_layout
        )
        self.in_channels = c_in_per_group * groups
        self.kernel_size = (kh, kw)
        self.relu = relu
        self.entry_name: str | None = None
        self.entry_channels_last = False

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        if self.entry_name is not None:
            checks.check_activation(
                f"optimized model input (first fused layer {self.entry_name!r})",
                x,
                dtype=self.weight.dtype,
                device=self.weight.device,
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
        return weight_layouts.WeightLayout.parse(self.weight_layout).algorithm

    @property
    def cpu_tier(self) -> str | None:
        """The CPU tier whose kernels read the weight (avx2, avx512), or None for the logical layout."""
        return weight_layouts.WeightLayout.parse(self.weight_layout).tier

    def __setstate__(self, state):
        super().__setstate__(state)
        layout = weight_layouts.WeightLayout.parse(getattr(self, "weight_layout", weight_layouts.LOGICAL))
        if layout.tier is None:
            return
        from .. import _ext, backends  # here, not at import: backends imports this package

        tiers = {t["name"]: t for t in _ext.cpu_tiers()}
        if layout.tier in tiers and not tiers[layout.tier]["unsupported_reason"]:
            return
        # Saved where another tier ran: back to the logical weight, then this machine's layout.
        logical = weight_layouts.unpack(self.weight, layout, self.out_channels, self.groups)
        self.weight, self.weight_layout = backends.BACKENDS["cpp"].prepare_weight(
            logical, self.groups, self.stride, self.dilation
        )

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, dilation={self.dilation}, groups={self.groups}, "
            f"relu={self.relu}, backend={self.backend!r}, dtype={self.weight.dtype}, "
            f"weight_layout={self.weight_layout!r}"
        )
