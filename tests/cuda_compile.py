"""Compile the CUDA sources for sm_80 and sm_90 with nvcc and read what came out: per-kernel
registers and spills (ptxas -v) and tensor-core instructions in the SASS (HMMA).

    .venv/bin/python tests/cuda_compile.py      # the table recorded in BENCHMARKS.md
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import triton

CUDA_SOURCES = Path(__file__).resolve().parents[1] / "csrc" / "cuda"
ARCHS = (80, 90)


def nvcc() -> str:
    for candidate in (shutil.which("nvcc"), "/usr/local/cuda/bin/nvcc"):
        if candidate and os.path.exists(candidate):
            return candidate
    raise RuntimeError("nvcc not found: the CUDA sources cannot be compile-checked on this machine")


@dataclass
class KernelUsage:
    name: str  # demangled
    arch: int
    registers: int
    spill_bytes: int
    hmma: int  # tensor-core multiply-add instructions in the SASS


def _demangle(names: list[str]) -> list[str]:
    result = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True, check=True)
    return result.stdout.splitlines()


def compile_source(source: Path, arch: int) -> list[KernelUsage]:
    with tempfile.TemporaryDirectory() as directory:
        cubin = os.path.join(directory, "out.cubin")
        result = subprocess.run(
            [nvcc(), "-std=c++17", "-O3", "-cubin", f"-arch=sm_{arch}", "-Xptxas", "-v", "-I", str(CUDA_SOURCES),
             "-o", cubin, str(source)],
            capture_output=True, text=True,
        )  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"nvcc failed on {source.name} for sm_{arch}:\n{result.stderr[-4000:]}")
        cuobjdump = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
        sass = subprocess.run([cuobjdump, "-sass", cubin], capture_output=True, text=True, check=True).stdout
    usage, current = {}, None
    for line in result.stderr.splitlines():
        if match := re.search(r"Compiling entry function '(\w+)'", line):
            current = match.group(1)
            usage[current] = [0, 0]
        elif current and (match := re.search(r"(\d+) bytes spill stores", line)):
            usage[current][1] = int(match.group(1))
        elif current and (match := re.search(r"Used (\d+) registers", line)):
            usage[current][0] = int(match.group(1))
    hmma = {}
    for chunk in sass.split("Function : ")[1:]:
        name = chunk.split()[0]
        hmma[name] = len(re.findall(r"\bHMMA\.", chunk))
    names = list(usage)
    return [
        KernelUsage(demangled, arch, usage[n][0], usage[n][1], hmma.get(n, 0))
        for n, demangled in zip(names, _demangle(names))
    ]


def compile_all() -> list[KernelUsage]:
    return [k for source in sorted(CUDA_SOURCES.glob("*.cu")) for arch in ARCHS for k in compile_source(source, arch)]


def short_name(name: str) -> str:
    return re.sub(r"fastresnet::cuda::\(anonymous namespace\)::", "", name).replace("fastresnet::cuda::", "")


if __name__ == "__main__":
    print("| kernel | arch | registers | spill stores (B) | HMMA in SASS |")
    print("|---|---|---|---|---|")
    for k in compile_all():
        print(f"| `{short_name(k.name)}` | sm_{k.arch} | {k.registers} | {k.spill_bytes} | {k.hmma} |")
    sys.exit(0)
