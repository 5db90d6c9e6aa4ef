"""FusedResidualBlock: ``relu(main(x) + shortcut(x))`` with the add and ReLU fused."""

from __future__ import annotations

import torch
from torch import nn

from .conv import FusedConv2d
from .op_holder import OpHolder


class FusedAddReLU(OpHolder):
    """relu(x + residual) as one op, for a block whose main branch does not end in a conv."""

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.op(x, residual)


class FusedResidualBlock(nn.Module):
    """A residual block rebuilt from fused parts.

    ``body`` runs the main branch up to its last layer, ``last`` is that layer, ``shortcut``
    is the identity (empty) or the downsample. When ``last`` is a FusedConv2d the residual
    add and ReLU run in its epilogue (``merge`` is None), so they cost no extra pass over
    memory; otherwise ``merge`` adds and applies the ReLU in one op.
    """

    def __init__(self, body: nn.Sequential, last: nn.Module, shortcut: nn.Sequential, merge: FusedAddReLU | None):
        super().__init__()
        if merge is None and not (isinstance(last, FusedConv2d) and last.relu):
            raise ValueError("without a merge op, the last layer must be a FusedConv2d with its ReLU on")
        self.body = body
        self.last = last
        self.shortcut = shortcut
        self.merge = merge

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = self.shortcut(x)
        out = self.body(x)
        if self.merge is None:
            return self.last(out, identity)
        return self.merge(self.last(out), identity)
