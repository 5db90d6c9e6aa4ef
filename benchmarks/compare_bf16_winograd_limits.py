"""Whole-model bf16 on the active CPU tier with other Winograd limits, interleaved in one process.

    .venv/bin/python benchmarks/compare_bf16_winograd_limits.py resnet18 1

The tier's bf16 Winograd limits (C_out x C_in; TierFacts in csrc/cpu/kernels.h) replaced for
each candidate, to choose them: every conv direct; F(4x4) up to 64x64, 128x128 or 256x256 and
no F(2x2); F(4x4) up to 256x256 and F(2x2) up to 512x512 (the fp32 limits of the AVX-512
tiers). Each round runs every candidate twice and keeps the mean; medians of 7 rounds.
"""

import sys
import time

import torch

import fastresnet
from fastresnet import backends
from fastresnet.bench.models import build_model

LIMITS = {  # label: (F(4x4) limit, F(2x2) limit)
    "direct": (0, 0),
    "F(4x4) to 64x64": (64 * 64, 64 * 64),
    "F(4x4) to 128x128": (128 * 128, 128 * 128),
    "F(4x4) to 256x256": (256 * 256, 256 * 256),
    "F(4x4) to 256x256, F(2x2) to 512x512": (256 * 256, 512 * 512),
}


def main(name: str, batch: int, rounds: int = 7) -> None:
    torch.set_num_threads(2)
    model, x = build_model(name), torch.randn(batch, 3, 224, 224).bfloat16()
    tier_of_machine = backends.active_cpu_tier
    candidates = {}
    try:
        for label, (limit4, limit2) in LIMITS.items():
            tier = dict(tier_of_machine(), bf16_winograd4x4_max_channels=limit4, bf16_winograd2x2_max_channels=limit2)
            backends.active_cpu_tier = lambda tier=tier: tier
            candidates[label] = fastresnet.optimize(model, dtype=torch.bfloat16, backend="cpp-cpu")
    finally:
        backends.active_cpu_tier = tier_of_machine
    times = {label: [] for label in candidates}
    with torch.inference_mode():
        for _ in range(rounds):
            for label, fast in candidates.items():
                fast(x)
                start = time.perf_counter()
                fast(x)
                fast(x)
                times[label].append((time.perf_counter() - start) / 2 * 1e3)
    for label, t in times.items():
        print(f"{name} batch {batch}  {label:38s} median {sorted(t)[len(t) // 2]:8.2f} ms")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
