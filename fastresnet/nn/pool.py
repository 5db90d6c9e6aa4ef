"""Pooling modules backed by a backend's fused pooling ops."""

from __future__ import annotations

from typing import Callable

import torch

from .op_holder import OpHolder


class FusedMaxPool2d(OpHolder):
    def __init__(self, kernel_size, stride, padding, dilation, ceil_mode: bool, *, op: Callable, backend: str):
        super().__init__(op, backend)
        self.kernel_size, self.stride = tuple(kernel_size), tuple(stride)
        self.padding, self.dilation = tuple(padding), tuple(dilation)
        self.ceil_mode = ceil_mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode)

    def extra_repr(self) -> str:
        return (
            f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
            f"dilation={self.dilation}, ceil_mode={self.ceil_mode}, backend={self.backend!r}"
        )


class FusedGlobalAvgPool2d(OpHolder):
    """Drop-in for AdaptiveAvgPool2d(1): (N, C, H, W) -> (N, C, 1, 1)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)[:, :, None, None]
