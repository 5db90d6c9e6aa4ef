"""FusedConv2d: a BN-folded convolution with bias, optional residual and ReLU in one op."""

from __future__ import annotations

from typing import Callable

import torch

from ..ops import checks
from .op_holder import OpHolder


class FusedConv2d(OpHolder):
    """``act(conv2d(x, weight) + bias (+ residual))`` through one backend op.

    Inference only: the folded weight and bias are buffers, not parameters. The weight is in
    the layout its backend reads (see ``checks.conv_weight_geometry``), so the conv's
    geometry is kept beside it.
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
    ) -> None:
        super().__init__(op, backend)
        self.register_buffer("weight", weight)
        self.register_buffer("bias", bias)
        self.stride, self.padding, self.dilation = tuple(stride), tuple(padding), tuple(dilation)
        self.groups = groups
        self.out_channels, c_in_per_group, kh, kw = checks.conv_weight_geometry(
            "FusedConv2d", weight, bias, groups
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
            x, self.weight, self.bias, residual, self.stride, self.padding, self.dilation, self.groups, self.relu
        )

    @property
    def algorithm(self) -> str:
        """"winograd" when the weight is transformed for Winograd F(2x2, 3x3), else "direct"."""
        return "winograd" if self.weight.dim() == 5 else "direct"

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, dilation={self.dilation}, groups={self.groups}, "
            f"relu={self.relu}, backend={self.backend!r}, dtype={self.weight.dtype}, algorithm={self.algorithm!r}"
        )
