"""The C++ CPU conv kernels per tier and algorithm, layer by layer (bias + ReLU, float32, NHWC),
interleaved with eager oneDNN conv + ReLU: every 3x3 stride-1 layer shape of ResNet-18/34/50
(direct, Winograd F(2x2,3x3) and F(4x4,3x3)) and ResNet-50's 1x1 shapes (direct). GFLOP/s
counts the direct conv's FLOPs (effective for Winograd). Every tier this CPU runs is
measured; the tables are printed at the end of the run, and the op-level error of each
algorithm against float64 (max |error| / max |output|) is printed beside its time.

Run:  .venv/bin/python -m pytest benchmarks/test_cpu_conv.py -q
"""

import os

import pytest
import torch
import torch.nn.functional as F

from fastresnet import _ext
from fastresnet.backends import BACKENDS
from fastresnet.bench.runner import measure_interleaved

from conftest import SECTIONS

ROUNDS = int(os.environ.get("FASTRESNET_BENCH_ROUNDS", "20"))
CONV3X3 = [(64, 64, 56), (128, 128, 28), (256, 256, 14), (512, 512, 7)]  # (C_in, C_out, H = W)
CONV1X1 = [(64, 256, 56), (256, 64, 56), (256, 128, 56), (512, 128, 28), (128, 512, 28), (1024, 256, 14),
           (256, 1024, 14), (2048, 512, 7), (512, 2048, 7)]  # fmt: skip
TABLES: dict[str, list[str]] = {}


def runnable_tiers() -> list[str]:
    return [t["name"] for t in _ext.cpu_tiers() if not t["unsupported_reason"]]


def run_layer(title: str, header: str, c_in: int, c_out: int, k: int, size: int, batch: int, kinds: list[str]):
    ops, ext = BACKENDS["cpp-cpu"].ops(), _ext.extension()
    x = torch.randn(batch, c_in, size, size).contiguous(memory_format=torch.channels_last)
    weight = torch.randn(c_out, c_in, k, k) / (k * k * c_in) ** 0.5
    bias = torch.randn(c_out)
    eager_weight = weight.contiguous(memory_format=torch.channels_last)
    pad = k // 2
    layouts = [f"{tier}:{kind}" for tier in runnable_tiers() for kind in kinds]

    def fused(layout):
        w = ext.pack_conv_weight(weight, 1, layout)
        return lambda: ops.conv2d_bias_act(x, w, bias, None, [1, 1], [pad, pad], [1, 1], 1, True, layout)

    with torch.inference_mode():
        candidates = {"eager": lambda: F.relu(F.conv2d(x, eager_weight, bias, 1, pad))}
        candidates.update({layout: fused(layout) for layout in layouts})
        expected = F.relu(F.conv2d(x.double(), weight.double(), bias.double(), 1, pad))
        scale = expected.abs().max().item()
        errors = {name: (run().double() - expected).abs().max().item() / scale for name, run in candidates.items()}
        samples = measure_interleaved(candidates, rounds=ROUNDS, warmup=3)
    gflop = 2 * batch * c_in * c_out * k * k * size * size / 1e9
    ms = {name: s.p50 * 1e3 for name, s in samples.items()}
    cells = [f"{ms[n]:.3f} ({gflop / ms[n] * 1e3:.0f}; {errors[n]:.0e})" for n in candidates]
    best = min(layouts, key=lambda n: ms[n])
    rows = TABLES.setdefault(title, [f"## {title}: ms (GFLOP/s; max error / output scale vs fp64), medians", "",
                                     f"| layer | batch | {' | '.join(candidates)} | fastest | vs eager |",
                                     "|---" * (len(candidates) + 4) + "|"])  # fmt: skip
    rows.append(f"| {c_in}->{c_out} {k}x{k}/s1 @ {size}x{size} | {batch} | {' | '.join(cells)} | {best} "
                f"| {ms['eager'] / ms[best]:.2f}x |")  # fmt: skip
    table = "\n".join(rows) + "\n"
    for i, section in enumerate(SECTIONS):
        if section.startswith(f"## {title}"):
            SECTIONS[i] = table
            break
    else:
        SECTIONS.append(table)


@pytest.mark.parametrize("batch", [1, 8])
@pytest.mark.parametrize("c_in,c_out,size", CONV3X3)
def test_conv3x3_algorithms(c_in, c_out, size, batch):
    run_layer("C++ CPU conv 3x3/s1 + bias + ReLU per tier and algorithm", "", c_in, c_out, 3, size, batch,
              ["blocked", "winograd2x2", "winograd4x4"])


@pytest.mark.parametrize("batch", [1, 8])
@pytest.mark.parametrize("c_in,c_out,size", CONV1X1)
def test_conv1x1_direct(c_in, c_out, size, batch):
    run_layer("C++ CPU conv 1x1/s1 + bias + ReLU per tier", "", c_in, c_out, 1, size, batch, ["blocked"])
