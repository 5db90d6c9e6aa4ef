"""The models the benchmark knows, built without downloads (random weights, realistic BN
statistics: also what the tests and benchmarks/ build their models with), and their FLOP counts."""

from __future__ import annotations

import torch
import torchvision
from torch import nn
from torchvision.models import resnet

MODEL_NAMES = (
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
    "resnext50_32x4d", "resnext101_32x8d", "resnext101_64x4d", "wide_resnet50_2", "wide_resnet101_2",
)  # fmt: skip


def check_model_name(name: str) -> str:
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown model {name!r}; valid models are {', '.join(MODEL_NAMES)}")
    return name


def build_model(name: str, num_classes: int = 1000, seed: int = 0) -> nn.Module:
    """An eval-mode torchvision model with random weights and realistic BN statistics."""
    torch.manual_seed(seed)
    model = getattr(torchvision.models, check_model_name(name))(weights=None, num_classes=num_classes)
    calibration = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(seed + 1))
    return set_realistic_batchnorm_(model, calibration).eval()


@torch.no_grad()
def set_realistic_batchnorm_(model: nn.Module, inputs: torch.Tensor, seed: int = 0) -> nn.Module:
    """Give every BatchNorm2d non-trivial affine parameters and running statistics.

    gamma and beta are drawn at random, then the running mean and variance are measured on
    ``inputs`` (a cumulative average, as after training), so every layer's statistics match
    the activations it really sees. As in trained ResNets, the BN that closes a residual
    branch gets a small gamma: each block adds a small update to the residual stream, which
    keeps deep networks (ResNet-152) well scaled.
    """
    generator = torch.Generator().manual_seed(seed)
    branch_ends = {id(block.bn2) for block in model.modules() if isinstance(block, resnet.BasicBlock)}
    branch_ends |= {id(block.bn3) for block in model.modules() if isinstance(block, resnet.Bottleneck)}
    batchnorms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in batchnorms:
        n = bn.num_features
        low, high = (0.0, 0.4) if id(bn) in branch_ends else (0.5, 1.5)
        bn.weight.copy_(torch.empty(n).uniform_(low, high, generator=generator))
        bn.bias.copy_(torch.empty(n).normal_(0.0, 0.2, generator=generator))
        bn.reset_running_stats()
        bn.momentum = None  # cumulative moving average over the calibration batches
    was_training = model.training
    model.train()
    model(inputs)
    model.train(was_training)
    for bn in batchnorms:
        bn.momentum = 0.1
    return model


def count_flops(model: nn.Module, image_size: int) -> int:
    """Floating-point operations of one image: 2 per multiply-add of every Conv2d and Linear."""
    total = 0

    def conv_hook(module: nn.Conv2d, inputs, output):
        nonlocal total
        kh, kw = module.kernel_size
        total += 2 * output[0].numel() * (module.in_channels // module.groups) * kh * kw

    def linear_hook(module: nn.Linear, inputs, output):
        nonlocal total
        total += 2 * module.in_features * module.out_features

    hooks = [
        m.register_forward_hook(conv_hook if isinstance(m, nn.Conv2d) else linear_hook)
        for m in model.modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    try:
        with torch.no_grad():
            parameter = next(model.parameters())
            model(torch.zeros(1, 3, image_size, image_size, dtype=parameter.dtype, device=parameter.device))
    finally:
        for hook in hooks:
            hook.remove()
    return total
