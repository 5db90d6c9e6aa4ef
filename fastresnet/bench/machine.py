"""What machine a benchmark ran on, and the peak it is measured against."""

from __future__ import annotations

import platform
import time

import torch

from .. import _ext

# Dense tensor-core peaks from the vendors' datasheets (FLOP/s), by GPU name fragment.
GPU_DATASHEET_PEAK = {
    "H200": {torch.float16: 989e12, torch.bfloat16: 989e12, torch.float32: 67e12},
    "H100": {torch.float16: 989e12, torch.bfloat16: 989e12, torch.float32: 67e12},
    "A100": {torch.float16: 312e12, torch.bfloat16: 312e12, torch.float32: 19.5e12},
}


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_name()}, {torch.get_num_threads()} threads"


def measured_cpu_peak(repeats: int = 3) -> tuple[float, str]:
    """(FLOP/s, how) of the CPU on torch's thread count: the AVX2 FMA peak measured by the
    compiled extension, or, without it, the best a square fp32 GEMM reaches."""
    threads = torch.get_num_threads()
    extension = _ext.extension()
    if extension is not None:
        try:
            best = max(extension.fma_peak_gflops(threads, 100_000_000) for _ in range(repeats))
            return best * 1e9, f"measured fp32 AVX2 FMA peak, {threads} threads"
        except RuntimeError:  # no AVX2/FMA on this CPU: fall back to the GEMM
            pass
    size = 2048
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best, f"measured fp32 GEMM (torch.mm {size}), {threads} threads"


def peak_flops(device: torch.device, dtype: torch.dtype) -> tuple[float | None, str]:
    """(FLOP/s, where the figure comes from); None where no figure is known."""
    if device.type == "cpu":
        return measured_cpu_peak()
    name = torch.cuda.get_device_name(device)
    for fragment, peaks in GPU_DATASHEET_PEAK.items():
        if fragment in name:
            return peaks.get(dtype), f"{fragment} datasheet"
    return None, f"no datasheet figure for {name}"
