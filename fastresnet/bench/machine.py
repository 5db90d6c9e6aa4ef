"""What machine a benchmark ran on, and the peak it is measured against."""

from __future__ import annotations

import os
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


# The /proc/cpuinfo flags that decide which kernels can run: the tiers' instructions, and the
# AVX-512 extensions the peers' libraries switch on (bf16 and vnni matter to them, not to fp32 here).
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_bf16", "avx512_vnni")

# What `fastresnet bench --cpu-isa` sets, per cap. Each library reads its variable once, at
# its first use: fastresnet's kernels; oneDNN (the convs of eager and torch.compile);
# ATen's own vectorized kernels (BN, ReLU, add, pools) and Inductor's generated C++, which
# both follow ATEN_CPU_CAPABILITY; MKL (the final linear layer's GEMM).
CPU_ISA_ENV = {
    "avx2": {
        "FASTRESNET_CPU_ISA": "avx2",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
        "ATEN_CPU_CAPABILITY": "avx2",
        "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    },
    "avx512": {
        "FASTRESNET_CPU_ISA": "avx512",
        "ONEDNN_MAX_CPU_ISA": "AVX512_CORE",
        "ATEN_CPU_CAPABILITY": "avx512",
        "MKL_ENABLE_INSTRUCTIONS": "AVX512",
    },
}
# The flags a cap needs for the peers' libraries (fastresnet's own tiers check theirs): ATen
# takes ATEN_CPU_CAPABILITY at its word, so a cap above what the CPU has would crash on an
# illegal instruction instead of being ignored.
CPU_ISA_FLAGS = {"avx2": ("avx2", "fma"), "avx512": ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq")}


def _cpuinfo_field(name: str) -> str | None:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.split(":", 1)[0].strip() == name:
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_name() -> str:
    return _cpuinfo_field("model name") or platform.processor() or platform.machine()


def cpu_flags() -> dict[str, bool] | None:
    """Which of CPU_FLAGS the CPU has, from /proc/cpuinfo; None where it cannot be read."""
    flags = _cpuinfo_field("flags")
    if flags is None:
        return None
    present = set(flags.split())
    return {flag: flag in present for flag in CPU_FLAGS}


def describe_cpu_flags() -> str:
    flags = cpu_flags()
    if flags is None:
        return "unknown (no /proc/cpuinfo)"
    has = [f for f, on in flags.items() if on]
    lacks = [f for f, on in flags.items() if not on]
    return " ".join(has) + (f" (lacks {' '.join(lacks)})" if lacks else "")


def cpu_isa_missing_flags(cap: str) -> list[str]:
    """The flags ``cap`` needs that this CPU lacks ([] where /proc/cpuinfo cannot be read)."""
    flags = cpu_flags()
    return [] if flags is None else [f for f in CPU_ISA_FLAGS[cap] if not flags[f]]


def cpu_isa_env_in_effect(cap: str) -> bool:
    """Whether this process started with ``cap``'s variables already in its environment."""
    return all(os.environ.get(name) == value for name, value in CPU_ISA_ENV[cap].items())


def cpu_isa_env_now() -> dict[str, str]:
    """Those of the cap variables that are set in the environment."""
    names = dict.fromkeys(name for env in CPU_ISA_ENV.values() for name in env)
    return {name: os.environ[name] for name in names if name in os.environ}


def fastresnet_cpu_tier() -> str | None:
    """The instruction-set tier fastresnet's CPU kernels run at, or None where they run at none
    (no tier on this CPU, or FASTRESNET_CPU_ISA names one it cannot run: optimize() says so)."""
    try:
        return _ext.cpu_isa()
    except ValueError:
        return None


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_name()}, {torch.get_num_threads()} threads"


GEMM_SIZE = 2048


def _cpu_peak(repeats: int) -> tuple[float, str | None]:
    """(FLOP/s, tier) on torch's thread count: the fp32 FMA peak of the tier fastresnet's
    kernels run at (the widest the CPU has, or the one FASTRESNET_CPU_ISA caps to), measured
    by the compiled extension; or, without it, the best a square fp32 GEMM reaches (tier None)."""
    threads = torch.get_num_threads()
    extension = _ext.extension()
    if extension is not None:
        tier = fastresnet_cpu_tier()
        if tier is not None:
            best = max(extension.fma_peak_gflops(threads, 100_000_000) for _ in range(repeats))
            return best * 1e9, tier
    a, b = torch.randn(GEMM_SIZE, GEMM_SIZE), torch.randn(GEMM_SIZE, GEMM_SIZE)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * GEMM_SIZE**3 / best, None


def measured_cpu_peak(repeats: int = 3) -> tuple[float, str]:
    """(FLOP/s, how) of the CPU on torch's thread count (see _cpu_peak)."""
    flops, tier = _cpu_peak(repeats)
    threads = torch.get_num_threads()
    if tier is None:
        return flops, f"measured fp32 GEMM (torch.mm {GEMM_SIZE}), {threads} threads"
    return flops, f"measured fp32 {tier.upper()} FMA peak, {threads} threads"


def _cpu_bf16_peak(repeats: int) -> tuple[float, str] | None:
    """(FLOP/s, tier) of the active tier's bf16 dot products on torch's thread count, or None
    where the tier or the CPU has none (the fp32 peak is then the ceiling given)."""
    extension = _ext.extension()
    tier = fastresnet_cpu_tier()
    if extension is None or tier is None or extension.bf16_dot_unsupported_reason():
        return None
    threads = torch.get_num_threads()
    return max(extension.bf16_dot_peak_gflops(threads, 50_000_000) for _ in range(repeats)) * 1e9, tier


def _cpu_int8_peak(repeats: int) -> tuple[float, str] | None:
    """(operations/s, tier) of the active tier's int8 conv products (2 per multiply-add, as
    FLOPs are counted) on torch's thread count, or None where fastresnet's kernels cannot run."""
    extension = _ext.extension()
    tier = fastresnet_cpu_tier()
    if extension is None or tier is None:
        return None
    threads = torch.get_num_threads()
    return max(extension.int8_dot_peak_gops(threads, 50_000_000) for _ in range(repeats)) * 1e9, tier


def peak_flops(device: torch.device, dtype: torch.dtype) -> tuple[float | None, str]:
    """(FLOP/s, a label for it); None where no figure is known. The label names the CPU tier
    the peak was measured at, so a "% of peak" is read against the right ceiling: in bfloat16,
    the bf16 dot-product peak where the CPU has one (its ratio to the fp32 FMA peak varies: half
    of it measured on the Xeon in BENCHMARKS.md); in int8, the int8 dot-product peak."""
    if device.type == "cpu" and dtype == torch.int8:
        int8 = _cpu_int8_peak(repeats=3)
        if int8 is not None and _ext.cpu_features().get("amx_int8"):
            return None, (  # as in bfloat16 below
                f"int8 peak not measured: this CPU has AMX, whose tile multiplies the peers use exceed the "
                f"vector int8 dot peak ({int8[1]}, measured: {int8[0] / 1e9:.1f} GOP/s)"
            )
        if int8 is not None:
            return int8[0], f"int8 dot peak ({int8[1]}, measured; int8 operations counted as FLOPs, 2 per multiply-add)"
    if device.type == "cpu":
        bf16 = _cpu_bf16_peak(repeats=3) if dtype == torch.bfloat16 else None
        if bf16 is not None and _ext.cpu_features().get("amx_bf16"):
            # oneDNN's bf16 convs (eager, torch.compile, OpenVINO) run on AMX's tile multiplies
            # there, far past the vector units: no measured ceiling, so no "% of peak".
            return None, (
                f"bf16 peak not measured: this CPU has AMX, whose tile multiplies the peers use exceed the "
                f"vector bf16 dot peak ({bf16[1]}, measured: {bf16[0] / 1e9:.1f} GFLOP/s)"
            )
        if bf16 is not None:
            return bf16[0], f"bf16 dot peak ({bf16[1]}, measured)"
        flops, tier = _cpu_peak(repeats=3)
        if tier is None:
            return flops, f"fp32 GEMM peak (torch.mm {GEMM_SIZE}, measured)"
        return flops, f"FMA peak ({tier}, measured)"
    name = torch.cuda.get_device_name(device)
    dtype_name = str(dtype).removeprefix("torch.")
    for fragment, peaks in GPU_DATASHEET_PEAK.items():
        if fragment in name:
            return peaks.get(dtype), f"{dtype_name} peak ({fragment} datasheet)"
    return None, f"peak (no datasheet figure for {name})"
