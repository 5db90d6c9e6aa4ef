"""The modules an optimized model is made of (inference only)."""

from .block import FusedAddReLU, FusedResidualBlock
from .conv import FusedConv2d
from .pool import FusedGlobalAvgPool2d, FusedMaxPool2d

FUSED_MODULES = (FusedAddReLU, FusedResidualBlock, FusedConv2d, FusedGlobalAvgPool2d, FusedMaxPool2d)

__all__ = [
    "FUSED_MODULES",
    "FusedAddReLU",
    "FusedConv2d",
    "FusedGlobalAvgPool2d",
    "FusedMaxPool2d",
    "FusedResidualBlock",
]
