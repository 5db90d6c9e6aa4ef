"""Accuracy of the C++ CPU ops against torch's own CPU ops in float32 (oneDNN's convolution
on channels_last, max_pool2d, mean, add + relu), both measured against float64, on every
instruction-set tier this CPU runs (the ``cpu_tier`` fixture).

Error is max |out - ref64| / max |ref64| (a fraction of the output scale). The rule: ours
<= 2 x torch's error + 1e-7 (so exact cases, 0 against 0, pass), except Winograd, whose
bounds are stated below with their reason. Shapes are small but their reductions long
(K = KH * KW * C_in/groups >= 500 for the convs, but for the stem's 147), so the error is
the accumulation's; inputs zero-mean ("randn") and ReLU-like ("relu"), weights at kaiming
scale, biases N(0, 1) and, where said, 4 x N(0, 1).

Run as a script for the table in BENCHMARKS.md ("Accuracy of the CPU ops against oneDNN"):
ResNet-50-sized layers at batch 1, every tier this CPU runs:

    .venv/bin/python tests/test_cpu_accuracy.py
"""

from __future__ import annotations

import copy
import sys
from dataclasses import dataclass
from pathlib import Path

if __name__ == "__main__":  # run as a script: this checkout's package, not an installed one
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import BasicBlock, conv1x1

from fastresnet import _ext
from fastresnet.backends import BACKENDS
from fastresnet.bench.models import set_realistic_batchnorm_
from fastresnet.numerics import max_abs_error, output_scale

OPS = BACKENDS["cpp-cpu"].ops()
FLOOR = 1e-7  # of the output scale: below this both are exact for practical purposes
# Winograd rounds more than a direct conv, by construction: the transformed input and
# products are sums of several inputs, each rounded in float32, before and after the
# channel-wise products. F(2x2, 3x3)'s transforms add 2 (input) and 3 (output) values per
# dimension with coefficients +-1: measured 0.3-2.1x oneDNN's error (the high end on small
# maps, where oneDNN's own error is lowest). F(4x4, 3x3)'s use the points 0, +-1, +-2, with
# coefficients up to 5 (B^T) and 8 (A^T), so the values rounded are several times the size
# of what they sum to (Lavin & Gray 2016, section 5; NNPACK's and oneDNN's F(4x4)s share
# it): measured 2e-6 to 1e-5 of the output scale, against oneDNN's 1e-7 to 2e-6, a ratio
# of 3x (512 channels at 7x7, where oneDNN's error is largest) to 34x (256 channels at 8x6,
# where it is smallest). Its bounds: both the ratio and the absolute error.
WINOGRAD_2X2_RATIO = 3.0
WINOGRAD_4X4_RATIO = 40.0
WINOGRAD_MAX = 2e-5  # of the output scale, either tile size
RATIO = 2.0


def rel_error(out: torch.Tensor, ref64: torch.Tensor) -> float:
    return max_abs_error(out, ref64) / output_scale(ref64)


def activation(shape, kind: str, gen: torch.Generator) -> torch.Tensor:
    """Zero-mean ("randn") or ReLU-like ("relu": half zeros, positive) activations, NHWC."""
    x = torch.randn(shape, generator=gen)
    return (x.relu() if kind == "relu" else x).contiguous(memory_format=torch.channels_last)


@dataclass(frozen=True)
class ConvCase:
    c_in: int
    c_out: int
    k: int
    h: int
    w: int
    stride: int = 1
    groups: int = 1
    bias_scale: float = 1.0  # folded BN biases can be large against the sum
    residual: bool = False  # with residual + ReLU: the whole epilogue
    batch: int = 1

    def __str__(self) -> str:
        s = f"{self.k}x{self.k}" + (f"/s{self.stride}" if self.stride > 1 else "")
        s += f" g{self.groups}" if self.groups > 1 else ""
        s += f" {self.c_in}->{self.c_out} @{self.h}x{self.w}"
        s += f" bias*{self.bias_scale:g}" if self.bias_scale != 1 else ""
        return s + (" +res+relu" if self.residual else "")


def conv_errors(case: ConvCase, kind: str, inputs: str, tier: str, seed: int = 0) -> tuple[float, float]:
    """(ours, oneDNN's) error against float64 for one conv; ``kind`` names the weight
    layout: blocked (direct), winograd2x2 or winograd4x4."""
    gen = torch.Generator().manual_seed(seed)
    x = activation((case.batch, case.c_in, case.h, case.w), inputs, gen)
    fan_in = case.c_in // case.groups * case.k * case.k
    weight = torch.randn(case.c_out, case.c_in // case.groups, case.k, case.k, generator=gen) * (2 / fan_in) ** 0.5
    bias = torch.randn(case.c_out, generator=gen) * case.bias_scale
    pad = case.k // 2
    geometry = ([case.stride] * 2, [pad, pad], [1, 1], case.groups)
    ref = F.conv2d(x.double(), weight.double(), bias.double(), case.stride, pad, 1, case.groups)
    res = activation(ref.shape, "randn", gen) if case.residual else None
    onednn = F.conv2d(x, weight.contiguous(memory_format=torch.channels_last), bias, case.stride, pad, 1, case.groups)
    if res is not None:
        ref, onednn = (ref + res.double()).relu(), (onednn + res).relu()
    layout = f"{tier}:{kind}"
    packed = _ext.extension().pack_conv_weight(weight, case.groups, layout)
    ours = OPS.conv2d_bias_act(x, packed, bias, res, *geometry, case.residual, layout)
    return rel_error(ours, ref), rel_error(onednn, ref)


def within(ours: float, theirs: float, ratio: float = RATIO) -> bool:
    return ours <= ratio * theirs + FLOOR


# Small shapes whose reductions are long (K >= 500), one per shape class of the ResNets.
# Before this file, the direct kernel measured 1.2-15x oneDNN's error on these (11be781).
DIRECT_CASES = [
    ConvCase(576, 64, 1, 7, 9),  # 1x1, K = 576
    ConvCase(1100, 48, 1, 5, 6),  # 1x1, K = 1100: two flushes of the reduction (kReductionChunk = 1024)
    ConvCase(64, 64, 3, 9, 11),  # 3x3, K = 576
    ConvCase(64, 64, 3, 9, 11, bias_scale=4.0),  # a large bias: when it started the sum, 8-15x oneDNN's error
    ConvCase(64, 64, 3, 9, 11, residual=True),  # bias, residual and ReLU in the epilogue
    ConvCase(72, 72, 3, 51, 42),  # odd channels on a 51x42 map (issue 17's shape), K = 648
    ConvCase(64, 96, 3, 15, 13, stride=2),  # strided 3x3
    ConvCase(3, 64, 7, 33, 31, stride=2),  # the stem, 7x7/s2 (K = 147)
    ConvCase(16, 32, 7, 21, 19, stride=2),  # 7x7/s2 with K = 784
    ConvCase(256, 256, 3, 7, 9, groups=4),  # grouped, K = 576 per group
    ConvCase(256, 128, 3, 6, 7),  # K = 2304 (three flushes) on a small map, where oneDNN is most accurate
]
WINOGRAD_CASES = [ConvCase(128, 64, 3, 10, 9), ConvCase(256, 64, 3, 8, 6, bias_scale=4.0)]


@pytest.mark.parametrize("inputs", ["relu", "randn"])
@pytest.mark.parametrize("case", DIRECT_CASES, ids=str)
def test_direct_conv_within_2x_onednn(case, inputs, cpu_tier):
    ours, onednn = conv_errors(case, "blocked", inputs, cpu_tier["name"])
    assert within(ours, onednn), f"{case}: ours {ours:.2e}, oneDNN {onednn:.2e} ({ours / onednn:.1f}x)"


@pytest.mark.parametrize("inputs", ["relu", "randn"])
@pytest.mark.parametrize("case", WINOGRAD_CASES, ids=str)
def test_winograd_within_its_bound(case, inputs, cpu_tier):
    for kind, ratio in (("winograd2x2", WINOGRAD_2X2_RATIO), ("winograd4x4", WINOGRAD_4X4_RATIO)):
        ours, onednn = conv_errors(case, kind, inputs, cpu_tier["name"])
        assert within(ours, onednn, ratio), f"{kind} {case}: ours {ours:.2e}, oneDNN {onednn:.2e}"
        assert ours <= WINOGRAD_MAX, f"{kind} {case}: ours {ours:.2e} of the output scale"


POOL_SHAPES = [(2, 72, 51, 42), (2, 3, 51, 42), (4, 2048, 7, 7), (1, 40, 100, 101)]


@pytest.mark.parametrize("inputs", ["relu", "randn"])
@pytest.mark.parametrize("shape", POOL_SHAPES, ids=str)
def test_global_avg_pool_within_2x_torch_mean(shape, inputs, cpu_tier):
    """Summed in blocks then pairwise, divided once: as accurate as torch's cascade sum."""
    x = activation(shape, inputs, torch.Generator().manual_seed(0))
    ref = x.double().mean((2, 3))
    ours, theirs = rel_error(OPS.global_avg_pool(x), ref), rel_error(x.mean((2, 3)), ref)
    assert within(ours, theirs), f"{shape}: ours {ours:.2e}, torch {theirs:.2e}"


def test_global_avg_pool_divides_and_propagates_nan(cpu_tier):
    x = torch.full((1, 21, 7, 1), 3.0).contiguous(memory_format=torch.channels_last)
    assert torch.equal(OPS.global_avg_pool(x), x.mean((2, 3)))  # 21 / 7 = 3; 21 * float32(1/7) = 3.0000002
    x[0, 20, 6, 0] = float("nan")
    x[0, 4, 0, 0] = float("inf")
    out = OPS.global_avg_pool(x)
    assert out[0, 20].isnan() and out[0, 4] == float("inf") and out[0, :4].eq(3).all()


@pytest.mark.parametrize("inputs", ["relu", "randn"])
def test_max_pool_and_add_relu_are_exact(inputs, cpu_tier):
    """No accumulation: one max per window, one rounding per add, as torch."""
    gen = torch.Generator().manual_seed(0)
    x = activation((2, 72, 51, 42), inputs, gen)
    ref = F.max_pool2d(x.double(), 3, 2, 1)
    ours, theirs = rel_error(OPS.max_pool2d(x, [3, 3], [2, 2], [1, 1], [1, 1], False), ref), rel_error(
        F.max_pool2d(x, 3, 2, 1), ref)  # fmt: skip
    assert ours == theirs == 0.0
    r = activation(x.shape, "randn", gen)
    ref = (x.double() + r.double()).relu()
    assert rel_error(OPS.add_relu(x, r), ref) <= rel_error((x + r).relu(), ref) * RATIO + FLOOR


def odd_resnet() -> nn.Module:
    """ResNet-shaped with odd widths: the stem, a 72-channel stage and a 3-channel last
    block on a 51x42 map (from 204x168 inputs), pooled into a 1-output classifier, so the
    last convs' and the pool's errors reach the output undiluted."""

    def block(c_in, c_out):
        down = nn.Sequential(conv1x1(c_in, c_out), nn.BatchNorm2d(c_out)) if c_in != c_out else None
        return BasicBlock(c_in, c_out, downsample=down)

    class OddResNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 24, 7, 2, 3, bias=False)
            self.bn1, self.relu, self.maxpool = nn.BatchNorm2d(24), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)
            self.layer1 = nn.Sequential(block(24, 72), block(72, 72))
            self.layer2 = nn.Sequential(block(72, 3))
            self.avgpool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(3, 1)

        def forward(self, x):
            x = self.layer2(self.layer1(self.maxpool(self.relu(self.bn1(self.conv1(x))))))
            return self.fc(torch.flatten(self.avgpool(x), 1))

    torch.manual_seed(2)  # the weights: with these the old pool and conv kernels erred most (6x eager)
    model = OddResNet()
    calibration = torch.randn(2, 3, 204, 168, generator=torch.Generator().manual_seed(1))
    return set_realistic_batchnorm_(model, calibration, seed=0).eval()


def model_errors() -> tuple[float, float]:
    """(fastresnet's, eager's) error against float64 on odd_resnet(), on the active tier."""
    import fastresnet

    model = odd_resnet()
    x = torch.randn(4, 3, 204, 168, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = copy.deepcopy(model).double()(x.double())
        fast = fastresnet.optimize(model, backend="cpp-cpu")
        return rel_error(fast(x), ref), rel_error(model(x), ref)


def test_odd_resnet_within_2x_eager(cpu_tier):
    ours, eager = model_errors()
    assert within(ours, eager), f"fastresnet {ours:.2e}, eager {eager:.2e} of the output scale"


# The table: ResNet-50's layer shapes at batch 1 (and the odd shapes above).
TABLE_DIRECT = [
    ConvCase(3, 64, 7, 224, 224, stride=2),
    ConvCase(64, 64, 3, 56, 56),
    ConvCase(64, 256, 1, 56, 56),
    ConvCase(128, 128, 3, 56, 56, stride=2),
    ConvCase(256, 256, 3, 14, 14),
    ConvCase(256, 256, 3, 14, 14, bias_scale=4.0),
    ConvCase(1024, 256, 1, 14, 14),
    ConvCase(2048, 512, 1, 7, 7),
    ConvCase(512, 2048, 1, 7, 7),
    ConvCase(72, 72, 3, 51, 42),
    ConvCase(72, 72, 3, 51, 42, bias_scale=4.0),
    ConvCase(256, 256, 3, 14, 14, groups=32),
]
TABLE_WINOGRAD = [ConvCase(64, 64, 3, 56, 56), ConvCase(256, 256, 3, 14, 14), ConvCase(512, 512, 3, 7, 7)]
TABLE_POOL = [(8, 2048, 7, 7), (8, 72, 51, 42), (8, 3, 51, 42)]  # batch 8: a max over 3 values is luck


def table_rows(tier: str):
    """(op, shape, inputs, ours, torch's) for every measured case on ``tier``."""
    for inputs in ("relu", "randn"):
        for case in TABLE_DIRECT:
            yield ("direct conv", str(case), inputs, *conv_errors(case, "blocked", inputs, tier))
        for case in TABLE_WINOGRAD:
            for kind in ("winograd2x2", "winograd4x4"):
                yield (kind, str(case), inputs, *conv_errors(case, kind, inputs, tier))
        for shape in TABLE_POOL:
            x = activation(shape, inputs, torch.Generator().manual_seed(0))
            ref = x.double().mean((2, 3))
            yield ("global avg pool", f"{shape[1]} @{shape[2]}x{shape[3]}, batch {shape[0]}", inputs,
                   rel_error(OPS.global_avg_pool(x), ref), rel_error(x.mean((2, 3)), ref))  # fmt: skip
        x = activation((1, 64, 112, 112), inputs, torch.Generator().manual_seed(0))
        ref = F.max_pool2d(x.double(), 3, 2, 1)
        yield ("max pool 3x3/s2", "64 @112x112", inputs,
               rel_error(OPS.max_pool2d(x, [3, 3], [2, 2], [1, 1], [1, 1], False), ref),
               rel_error(F.max_pool2d(x, 3, 2, 1), ref))  # fmt: skip
        r = activation(x.shape, "randn", torch.Generator().manual_seed(1))
        ref = (x.double() + r.double()).relu()
        yield ("add + relu", "64 @112x112", inputs, rel_error(OPS.add_relu(x, r), ref), rel_error((x + r).relu(), ref))


def main() -> None:
    torch.manual_seed(0)
    tiers = [t["name"] for t in _ext.cpu_tiers() if not t["unsupported_reason"]]
    print("| tier | op | shape (batch 1) | inputs | ours | torch (oneDNN) | ratio |")
    print("|---|---|---|---|---|---|---|")
    for tier in tiers:
        _ext.set_cpu_isa(tier)
        for op, shape, inputs, ours, theirs in table_rows(tier):
            ratio = f"{ours / theirs:.2f}" if theirs > 0 else ("1 (both exact)" if ours == 0 else "inf")
            print(f"| {tier} | {op} | {shape} | {inputs} | {ours:.2e} | {theirs:.2e} | {ratio} |", flush=True)
        ours, eager = model_errors()
        print(f"| {tier} | whole model (odd_resnet) | 4x3x204x168 | randn | {ours:.2e} | {eager:.2e} (eager) "
              f"| {ours / eager:.2f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
