"""bf16 on the C++ CPU kernels per tier against float32, interleaved in one process.

    .venv/bin/python benchmarks/compare_bf16_tiers.py resnet50 1

Candidates: float32 and bfloat16, each with the default algorithm choice (Winograd where it
pays) and with every conv direct; bfloat16 on each tier this CPU runs that takes it
(VDPBF16PS on avx512bf16, widened on avx512 / avx2).
Each round runs every candidate twice and keeps the mean; medians of 7 rounds are printed.
"""

import sys
import time

import torch

import fastresnet
from fastresnet import _ext
from fastresnet.bench.models import build_model


def main(name: str, batch: int, rounds: int = 7) -> None:
    torch.set_num_threads(2)
    model = build_model(name)
    x = torch.randn(batch, 3, 224, 224)
    candidates = {
        "fp32 auto": (None, fastresnet.optimize(model), x),
        "fp32 direct": (None, fastresnet.optimize(model, conv_algorithm="direct"), x),
    }
    for tier in _ext.cpu_tiers():
        if not tier["unsupported_reason"] and "bfloat16" in tier["dtypes"].split():
            _ext.set_cpu_isa(tier["name"])
            for algorithm in ("auto", "direct"):
                fast = fastresnet.optimize(model, dtype=torch.bfloat16, backend="cpp-cpu", conv_algorithm=algorithm)
                candidates[f"bf16 {algorithm} {tier['name']}"] = (tier["name"], fast, x.bfloat16())
    times = {k: [] for k in candidates}
    try:
        with torch.inference_mode():
            for _ in range(rounds):
                for label, (tier, fast, inputs) in candidates.items():
                    _ext.set_cpu_isa(tier)
                    fast(inputs)
                    start = time.perf_counter()
                    fast(inputs)
                    fast(inputs)
                    times[label].append((time.perf_counter() - start) / 2 * 1e3)
    finally:
        _ext.set_cpu_isa(None)
    for label, t in times.items():
        print(f"{name} batch {batch}  {label:24s} median {sorted(t)[len(t) // 2]:8.2f} ms")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
