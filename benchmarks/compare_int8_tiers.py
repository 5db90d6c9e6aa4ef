"""The int8 conv of each CPU tier this machine runs, against fastresnet float32 (auto), on one
model, interleaved in one process: what VNNI (VPDPBUSD) gains over the AVX2 policy's widened
16-bit products on the same CPU.

    .venv/bin/python benchmarks/compare_int8_tiers.py resnet50 1

Each int8 model is quantized while its tier is active, so it holds that tier's packed weight
and runs that tier's kernel. Medians of 7 rounds, each round every candidate twice.
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
    calibration = [torch.randn(2, 3, 224, 224) for _ in range(4)]
    candidates = {"fp32 auto": fastresnet.optimize(model)}
    runnable = [t["name"] for t in _ext.extension().cpu_tiers() if not t["unsupported_reason"]]
    for tier in runnable:
        _ext.extension().set_cpu_isa(tier)
        candidates[f"int8 {tier}"] = fastresnet.quantize(model, calibration)
    _ext.extension().set_cpu_isa("")
    times: dict[str, list[float]] = {k: [] for k in candidates}
    with torch.inference_mode():
        for m in candidates.values():
            m(x)
        for _ in range(rounds):
            for label, m in candidates.items():
                start = time.perf_counter()
                m(x)
                m(x)
                times[label].append((time.perf_counter() - start) / 2 * 1e3)
    base = sorted(times["fp32 auto"])[rounds // 2]
    for label, t in times.items():
        median = sorted(t)[rounds // 2]
        print(f"{name} b{batch} {label:>18}: {median:8.2f} ms  ({base / median:.2f}x fp32)")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
