"""Compile the Triton kernels for real GPU targets without a GPU, and report what came out.

``triton.compile`` with a GPUTarget lowers a kernel to PTX and a cubin on any machine; the
cuobjdump that Triton ships then reads registers and stack (spill) use from the cubin. This catches compile errors, shared memory
above a target's limit, and float16/bfloat16 tiles that do not reach the tensor cores (no
``mma`` on sm_80, no ``wgmma``/``mma`` on sm_90), before any GPU is at hand.

    python -m fastresnet.triton.aot [--json]   # the report for every kernel and config

Run it without TRITON_INTERPRET: under the interpreter the kernels are not compilable.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from . import configs, conv, pool

ARCHS = (80, 90)
# Largest dynamic shared memory per block: A100 (sm_80) and H100 (sm_90).
SHARED_MEMORY_LIMIT = {80: 163 * 1024, 90: 227 * 1024}
TRITON_TYPES = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}


@dataclass(frozen=True)
class Case:
    """One kernel launch, specialised as Triton's JIT would specialise it at run time."""

    name: str
    kernel: object
    args: list  # positional arguments: tensors (meta tensors will do) and ints
    constexprs: dict
    options: dict
    dtype: str


@dataclass(frozen=True)
class Report:
    case: Case
    arch: int
    shared_bytes: int
    registers: int | None
    stack_bytes: int | None  # spill space
    tensor_cores: bool

    @property
    def problems(self) -> list[str]:
        found = []
        if self.shared_bytes > SHARED_MEMORY_LIMIT[self.arch]:
            found.append(f"shared memory {self.shared_bytes} B > sm_{self.arch} limit {SHARED_MEMORY_LIMIT[self.arch]} B")
        if self.case.name.startswith("conv") and self.case.dtype != "float32" and not self.tensor_cores:
            found.append(f"{self.case.dtype} conv without tensor-core instructions on sm_{self.arch}")
        return found


def _meta(shape, dtype, channels_last=True):
    tensor = torch.empty(shape, dtype=dtype, device="meta")
    return tensor.contiguous(memory_format=torch.channels_last) if channels_last and len(shape) == 4 else tensor


def conv_cases(dtypes=("float16",), batch: int = 32) -> list[Case]:
    """The conv kernel under every config conv_configs() can choose, with the full epilogue,
    on a representative NHWC layer of the shape class that gets the config."""
    cases = []
    for dtype_name in dtypes:
        dtype = getattr(torch, dtype_name)
        for layer, config in configs.all_conv_configs():
            k, s, p = layer.kernel, layer.stride, layer.kernel // 2
            out = (layer.size + 2 * p - k) // s + 1
            x = _meta((batch, layer.c_in, layer.size, layer.size), dtype)
            weight = _meta((layer.c_out, layer.c_in // layer.groups, k, k), dtype)
            bias = _meta((layer.c_out,), dtype)
            y = _meta((batch, layer.c_out, out, out), dtype)
            _, args, constexprs, options = conv.kernel_launch(
                x, weight, bias, y, y, [s, s], [p, p], [1, 1], layer.groups, True, config
            )
            name = f"conv {k}x{k} groups={layer.groups} [{config}]"
            cases.append(Case(name, conv.conv2d_bias_act_kernel, args, constexprs, options, dtype_name))
    return cases


def pool_cases(dtype_name: str = "float16", batch: int = 32) -> list[Case]:
    dtype = getattr(torch, dtype_name)
    x, y = _meta((batch, 64, 112, 112), dtype), _meta((batch, 64, 56, 56), dtype)
    features = _meta((batch, 2048, 7, 7), dtype)
    launches = {
        "max_pool2d": (pool.max_pool2d_kernel, pool.max_pool2d_launch(x, y, [3, 3], [2, 2], [1, 1], [1, 1])),
        "global_avg_pool": (pool.global_avg_pool_kernel, pool.global_avg_pool_launch(features, _meta((batch, 2048), dtype))),
        "add_relu": (pool.add_relu_kernel, pool.add_relu_launch(y, y, y)),
    }
    return [Case(name, kernel, a, c, o, dtype_name) for name, (kernel, (_, a, c, o)) in launches.items()]


def _specialise(case: Case) -> tuple[dict, dict, dict]:
    """(signature, constexprs, attrs) as Triton's JIT derives them from real arguments:
    an int equal to 1 becomes a constant, tensors and ints divisible by 16 are marked so."""
    names = list(inspect.signature(case.kernel.fn).parameters)
    signature, constexprs, attrs = {}, dict(case.constexprs), {}
    for index, (name, value) in enumerate(zip(names, case.args)):
        if isinstance(value, torch.Tensor):
            signature[name] = "*" + TRITON_TYPES[str(value.dtype).removeprefix("torch.")]
            attrs[(index,)] = [["tt.divisibility", 16]]  # torch allocations are 16-byte aligned
        elif value == 1:
            signature[name] = "constexpr"
            constexprs[name] = 1
        else:
            signature[name] = "i64" if abs(value) >= 2**31 else "i32"
            if value % 16 == 0:
                attrs[(index,)] = [["tt.divisibility", 16]]
    for name in case.constexprs:
        signature[name] = "constexpr"
    return {n: signature[n] for n in names}, constexprs, attrs


def _resource_usage(cubin: bytes) -> tuple[int | None, int | None]:
    """(registers, stack bytes) of the compiled cubin, read with the cuobjdump Triton ships.
    Stack bytes are the spill space: 0 means no spills."""
    tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    if not os.path.exists(tool):
        return None, None
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "kernel.cubin")
        with open(path, "wb") as f:
            f.write(cubin)
        text = subprocess.run([tool, "--dump-resource-usage", path], capture_output=True, text=True).stdout
    usage = re.search(r"REG:(\d+) STACK:(\d+)", text)
    return (int(usage.group(1)), int(usage.group(2))) if usage else (None, None)


def compile_case(case: Case, arch: int) -> Report:
    """Compile ``case`` for sm_``arch`` and read shared memory, registers, spills and mma use."""
    signature, constexprs, attrs = _specialise(case)
    source = ASTSource(fn=case.kernel, signature=signature, constexprs=constexprs, attrs=attrs)
    compiled = triton.compile(source, target=GPUTarget("cuda", arch, 32), options=case.options)
    ptx = compiled.asm["ptx"]
    tensor_cores = bool(re.search(r"\b(wgmma|mma)\.", ptx))
    registers, spills = _resource_usage(compiled.asm["cubin"])
    return Report(case, arch, compiled.metadata.shared, registers, spills, tensor_cores)


def report_rows(dtypes=("float16", "bfloat16", "float32")) -> list[dict]:
    rows = []
    for case in conv_cases(dtypes) + pool_cases():
        for arch in ARCHS:
            report = compile_case(case, arch)
            rows.append(
                dict(
                    kernel=case.name, dtype=case.dtype, arch=arch,
                    num_warps=case.options.get("num_warps", 4), num_stages=case.options.get("num_stages", 3),
                    shared_bytes=report.shared_bytes, registers=report.registers, stack_bytes=report.stack_bytes,
                    tensor_cores=report.tensor_cores, problems=report.problems,
                )  # fmt: skip
            )
    return rows


def main(argv: list[str]) -> int:
    rows = report_rows()
    if "--json" in argv:
        print(json.dumps(rows))
    else:
        print("| kernel | dtype | arch | warps | stages | shared (B) | registers | stack/spill (B) | tensor cores | problems |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            print(
                f"| {r['kernel']} | {r['dtype']} | sm_{r['arch']} | {r['num_warps']} | {r['num_stages']} | "
                f"{r['shared_bytes']} | {r['registers']} | {r['stack_bytes']} | {'yes' if r['tensor_cores'] else 'no'} | "
                f"{'; '.join(r['problems']) or '-'} |"
            )
    return 1 if any(r["problems"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
