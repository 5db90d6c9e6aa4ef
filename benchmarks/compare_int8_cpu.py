"""int8 on the C++ CPU kernels against fastresnet float32 and the int8 reference, interleaved
in one process, with each candidate's share of the convs' time.

    .venv/bin/python benchmarks/compare_int8_cpu.py resnet50 1

Candidates: float32 (auto: the C++ kernels, Winograd where it pays), int8 on the C++ kernels
(auto), and at batch 1 the int8 reference (plain PyTorch, the same answers). The int8 models
are calibrated on 4 random batches: the speed does not depend on the ranges. Each round runs
every candidate twice and keeps the mean; medians of 5 rounds are printed, then where the int8
model's time goes (torch.profiler, one call).
"""

import sys
import time

import torch

import fastresnet
from fastresnet.bench.models import build_model


def main(name: str, batch: int, rounds: int = 5) -> None:
    torch.set_num_threads(2)
    model = build_model(name)
    x = torch.randn(batch, 3, 224, 224)
    calibration = [torch.randn(2, 3, 224, 224) for _ in range(4)]
    candidates = {
        "fp32 auto": fastresnet.optimize(model),
        "int8 cpp-cpu": fastresnet.quantize(model, calibration),
    }
    if batch == 1:
        candidates["int8 reference"] = fastresnet.quantize(model, calibration, backend="reference")
    times = {k: [] for k in candidates}
    with torch.inference_mode():
        for fast in candidates.values():
            fast(x)  # warm: output memory, packed weights
        for _ in range(rounds):
            for label, fast in candidates.items():
                start = time.perf_counter()
                fast(x)
                fast(x)
                times[label].append((time.perf_counter() - start) / 2 * 1e3)
    base = sorted(times["fp32 auto"])[rounds // 2]
    print(f"{name} batch {batch}, 224x224, 2 threads, medians of {rounds} rounds")
    for label, values in times.items():
        median = sorted(values)[rounds // 2]
        print(f"  {label:16s} {median:8.2f} ms   {base / median:5.2f}x fp32")
    with torch.inference_mode(), torch.profiler.profile() as prof:
        candidates["int8 cpp-cpu"](x)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=8))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "resnet50", int(sys.argv[2]) if len(sys.argv) > 2 else 1)
