"""Fold an inference-mode BatchNorm into the convolution before it.

    y = gamma * (conv(x) + b - mean) / sqrt(var + eps) + beta
      = conv'(x) + b'   with  w' = w * s,  b' = (b - mean) * s + beta,  s = gamma / sqrt(var + eps)

Computed in float64 with eps inside the square root, then cast once to the target dtype:
folding in float16 or bfloat16 loses accuracy (pytorch/pytorch#120545).
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d


class NotFoldable(ValueError):
    """A normalisation layer that cannot be folded; the message says why."""


def is_batchnorm(module: nn.Module) -> bool:
    """BatchNorm2d or FrozenBatchNorm2d whose forward is the stock one (not overridden)."""
    if isinstance(module, nn.BatchNorm2d):
        return type(module).forward is nn.BatchNorm2d.forward
    if isinstance(module, FrozenBatchNorm2d):
        return type(module).forward is FrozenBatchNorm2d.forward
    return False


def batchnorm_statistics(bn: nn.Module) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """(mean, var, gamma, beta, eps) in float64; raises NotFoldable with the reason."""
    if not is_batchnorm(bn):
        raise NotFoldable(f"{type(bn).__name__} is not BatchNorm2d or FrozenBatchNorm2d")
    if isinstance(bn, nn.BatchNorm2d):
        if bn.training:
            raise NotFoldable("BatchNorm2d is in training mode: BN folding needs model.eval()")
        if bn.running_mean is None or bn.running_var is None:
            raise NotFoldable(
                "BatchNorm2d has no running statistics (track_running_stats=False), "
                "so it normalises with batch statistics even in eval mode"
            )
    mean = bn.running_mean.detach().double()
    var = bn.running_var.detach().double()
    ones = torch.ones_like(mean)
    gamma = ones if bn.weight is None else bn.weight.detach().double()
    beta = torch.zeros_like(mean) if bn.bias is None else bn.bias.detach().double()
    return mean, var, gamma, beta, float(bn.eps)


def fold_conv_bn(
    conv: nn.Conv2d, bn: nn.Module | None, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """The (weight, bias) of ``conv`` followed by ``bn`` (or by nothing), cast to ``dtype``.

    Always returns a bias (zeros for a conv without one) so fused kernels have one epilogue.
    """
    weight = conv.weight.detach().double()
    out_channels = weight.shape[0]
    bias = (
        conv.bias.detach().double()
        if conv.bias is not None
        else torch.zeros(out_channels, dtype=torch.float64, device=weight.device)
    )
    if bn is not None:
        mean, var, gamma, beta, eps = batchnorm_statistics(bn)
        if mean.shape != (out_channels,):
            raise NotFoldable(
                f"{type(bn).__name__} has {mean.shape[0]} features but the conv has {out_channels} output channels"
            )
        scale = gamma * torch.rsqrt(var + eps)
        weight = weight * scale.reshape(-1, 1, 1, 1)
        bias = (bias - mean) * scale + beta
    return weight.to(dtype).contiguous(), bias.to(dtype).contiguous()
