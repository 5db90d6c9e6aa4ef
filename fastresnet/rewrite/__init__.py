"""From a model to its fused form: fold_bn (BN folding), patterns (recognition), swap (the walk)."""

from .fold_bn import NotFoldable, fold_conv_bn
from .swap import Rewriter

__all__ = ["NotFoldable", "Rewriter", "fold_conv_bn"]
