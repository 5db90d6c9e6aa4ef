"""Tolerances and reference helpers shared by the tests and the benchmarks.

The ground truth is always the eager model (or op) in float64. Two rules, as in the
flash-attention tests:

* ops: ``|out - ref64| <= atol + rtol * |ref64|`` with the dtype's row of OP_TOLERANCES;
* whole models: the fused model's error against float64 must be at most twice the eager
  model's own error in the same dtype, plus ``MODEL_ATOL[dtype]`` times the output scale
  (max |ref64|). For float32 the product also promises an absolute bound: 1e-4 of the
  output scale.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn
from torchvision.models import resnet


@dataclass(frozen=True)
class Tolerance:
    atol: float
    rtol: float


# Per-op bounds against a float64 reference, for outputs of order 1.
OP_TOLERANCES = {
    torch.float32: Tolerance(atol=1e-5, rtol=1e-5),
    torch.float16: Tolerance(atol=2e-3, rtol=2e-3),
    torch.bfloat16: Tolerance(atol=1.6e-2, rtol=1.6e-2),
}

# Whole-model slack on top of "2 x eager's error", as a fraction of the output scale.
MODEL_ATOL = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}
FP32_MODEL_BOUND = 1e-4  # float32: |fused - ref64| <= 1e-4 * output scale, always


@contextlib.contextmanager
def no_tf32():
    """float32 references must be full float32: TF32 off for matmul and cuDNN."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def max_abs_error(out, ref) -> float:
    """Max |out - ref| over tensors or (nested) dicts/lists of tensors, compared in float64."""
    if isinstance(out, dict):
        return max(max_abs_error(out[k], ref[k]) for k in ref)
    if isinstance(out, (list, tuple)):
        return max(max_abs_error(o, r) for o, r in zip(out, ref))
    return (out.double() - ref.double()).abs().max().item() if out.numel() else 0.0


def output_scale(ref) -> float:
    if isinstance(ref, dict):
        return max(output_scale(v) for v in ref.values())
    if isinstance(ref, (list, tuple)):
        return max(output_scale(v) for v in ref)
    return ref.double().abs().max().item() if ref.numel() else 0.0


@dataclass
class ModelComparison:
    fused_error: float
    eager_error: float
    scale: float
    bound: float

    @property
    def ok(self) -> bool:
        return self.fused_error <= self.bound


def compare_to_reference(fused_out, eager_out, ref64, dtype: torch.dtype) -> ModelComparison:
    """Apply the whole-model rule for ``dtype`` to outputs already computed."""
    scale = output_scale(ref64)
    fused_error = max_abs_error(fused_out, ref64)
    eager_error = max_abs_error(eager_out, ref64)
    bound = 2 * eager_error + MODEL_ATOL[dtype] * scale
    if dtype == torch.float32:
        bound = min(bound, FP32_MODEL_BOUND * scale)
    return ModelComparison(fused_error, eager_error, scale, bound)


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
