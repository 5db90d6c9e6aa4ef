"""The C++ CPU conv kernels per algorithm: each 3x3 stride-1 layer shape of ResNet-18/34/50
(bias + ReLU, float32, NHWC), eager oneDNN conv + ReLU vs the direct kernel vs Winograd
F(2x2, 3x3), interleaved; GFLOP/s counts the direct conv's FLOPs (effective for Winograd).
The table is printed at the end of the run.

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
SHAPES = [(64, 56), (128, 28), (256, 14), (512, 7)]  # (channels, H = W)
ROWS: list[str] = []


@pytest.mark.parametrize("batch", [1, 8])
@pytest.mark.parametrize("channels,size", SHAPES)
def test_conv3x3_algorithms(channels, size, batch):
    ops, ext = BACKENDS["cpp"].ops(), _ext.extension()
    x = torch.randn(batch, channels, size, size).contiguous(memory_format=torch.channels_last)
    weight = torch.randn(channels, channels, 3, 3) / (9 * channels) ** 0.5
    bias = torch.randn(channels)
    direct, winograd = ext.block_conv_weight(weight, 1), ext.winograd_conv_weight(weight)
    eager_weight = weight.contiguous(memory_format=torch.channels_last)
    conv = lambda w: (lambda: ops.conv2d_bias_act(x, w, bias, None, [1, 1], [1, 1], [1, 1], 1, True))  # noqa: E731
    with torch.inference_mode():
        candidates = {"eager": lambda: F.relu(F.conv2d(x, eager_weight, bias, 1, 1)),
                      "direct": conv(direct), "winograd": conv(winograd)}  # fmt: skip
        expected = candidates["eager"]()
        for name in ("direct", "winograd"):
            torch.testing.assert_close(candidates[name](), expected, atol=1e-4, rtol=1e-4)
        samples = measure_interleaved(candidates, rounds=ROUNDS, warmup=3)
    gflop = 2 * batch * channels * channels * 9 * size * size / 1e9
    ms = {name: s.p50 * 1e3 for name, s in samples.items()}
    rate = {name: gflop / (t / 1e3) for name, t in ms.items()}
    ROWS.append(
        f"| {channels}->{channels} 3x3/s1 @ {size}x{size} | {batch} | {ms['eager']:.3f} ({rate['eager']:.0f}) "
        f"| {ms['direct']:.3f} ({rate['direct']:.0f}) | {ms['winograd']:.3f} ({rate['winograd']:.0f}) "
        f"| {ms['direct'] / ms['winograd']:.2f}x |"
    )
    table = "\n".join([
        "## C++ CPU conv kernels, 3x3 stride 1 + bias + ReLU: ms (GFLOP/s, direct-conv FLOPs), medians",
        "",
        "| layer | batch | eager oneDNN | direct | Winograd F(2x2,3x3) | Winograd vs direct |",
        "|---|---|---|---|---|---|",
        *ROWS,
    ]) + "\n"  # fmt: skip
    if len(ROWS) == 1:
        SECTIONS.append(table)
    else:
        SECTIONS[-1] = table  # the same table, one row longer
