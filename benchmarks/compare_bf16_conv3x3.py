"""bf16 3x3/s1 convs on the active CPU tier, per algorithm, interleaved in one process.

    .venv/bin/python benchmarks/compare_bf16_conv3x3.py

Each ResNet 3x3 stride-1 layer shape (C = C_in = C_out at H = W) with bias + ReLU, batch 1
and 8: direct bf16 (VDPBF16PS on avx512bf16, widened elsewhere), and Winograd F(2x2) and
F(4x4) over bf16 activations (products in fp32), beside the fp32 F(4x4) on the same values.
Medians of 7 rounds, with GFLOP/s of the direct conv's FLOPs (effective for Winograd).
These measurements set the tiers' bf16 Winograd limits (TierFacts, csrc/cpu/kernels.h).
"""

import time

import torch

from fastresnet import _ext
from fastresnet.backends import BACKENDS


def main(rounds: int = 7) -> None:
    torch.set_num_threads(2)
    ops, ext, tier = BACKENDS["cpp-cpu"].ops(), _ext.extension(), _ext.cpu_isa()
    print(f"tier {tier}, 2 threads")
    for batch in (1, 8):
        for c, size in [(64, 56), (128, 28), (256, 14), (512, 7)]:
            x = torch.randn(batch, c, size, size).bfloat16().contiguous(memory_format=torch.channels_last)
            weight, bias = (torch.randn(c, c, 3, 3) / (9 * c) ** 0.5).bfloat16(), torch.randn(c).bfloat16()
            candidates = {}  # label: (input, packed weight, bias, layout)
            for label, layout in [("direct", "blocked-bf16"), ("F(2x2)", "winograd2x2"), ("F(4x4)", "winograd4x4")]:
                name = f"{tier}:{layout}"
                candidates[label] = (x, ext.pack_conv_weight(weight, 1, name), bias, name)
            name = f"{tier}:winograd4x4"
            candidates["fp32 F(4x4)"] = (x.float(), ext.pack_conv_weight(weight.float(), 1, name), bias.float(), name)
            times = {label: [] for label in candidates}
            calls = max(1, 20 // batch)
            for _ in range(rounds):
                for label, (inputs, packed, b, layout) in candidates.items():
                    run = lambda: ops.conv2d_bias_act(inputs, packed, b, None, [1, 1], [1, 1], [1, 1], 1, True, layout)  # noqa: E731
                    run()
                    start = time.perf_counter()
                    for _ in range(calls):
                        run()
                    times[label].append((time.perf_counter() - start) / calls * 1e3)
            flops = 2 * batch * size * size * c * c * 9
            cells = []
            for label, t in times.items():
                median = sorted(t)[len(t) // 2]
                cells.append(f"{label} {median:.3f} ms ({flops / median / 1e6:.0f} GFLOP/s)")
            print(f"batch {batch} {c}@{size}: " + "  ".join(cells))


if __name__ == "__main__":
    main()
