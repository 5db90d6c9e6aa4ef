"""The backend registry: what exists, what can run on a device and why not, and the choice.

Each backend answers ``not_supported_reasons(device, dtype)``; an empty list means it can run.
``auto`` takes the highest-priority backend that can run and records why it skipped the
others; an explicitly requested backend that cannot run raises with all its reasons.
The environment variable FASTRESNET_BACKEND, when set, replaces ``auto`` (an explicit
``backend=`` argument still wins). Nothing here touches a GPU at import time.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import torch

from . import _ext, cpu_conv_choice
from .ops import (
    FusedOps, Int8Ops, backend_ops, cpp_int8, define_backend_ops, int8_reference, kernel_missing, onednn, reference,
)  # fmt: skip
from .ops import weight_layout
from .triton.configs import interpreting  # torch only: triton itself is imported on use

ENV_BACKEND = "FASTRESNET_BACKEND"
ENV_DISABLE_TRITON = "FASTRESNET_DISABLE_TRITON"
AUTO = "auto"


class Backend:
    name: str
    op_prefix: str  # its ops are fastresnet::<op_prefix>_<op> (ops/schemas.py)
    description: str

    def priority(self, device: torch.device) -> int:
        """Higher wins under `auto`."""
        raise NotImplementedError

    def not_supported_reasons(self, device: torch.device, dtype: torch.dtype | None = None) -> list[str]:
        """Why this backend cannot run on ``device`` (in ``dtype``, when given); empty if it can."""
        raise NotImplementedError

    def ops(self) -> FusedOps:
        raise NotImplementedError

    def int8_ops(self) -> Int8Ops:
        """Its int8 ops (ops/schemas.py INT8_SCHEMAS), where it has them."""
        raise NotImplementedError(f"the {self.name} backend has no int8 ops")

    def int8_weight_layout(self, weight: torch.Tensor) -> str:
        """The layout its int8 convs read ``weight`` (int8, logical) in (ops/weight_layout.py)."""
        return weight_layout.LOGICAL

    def int8_weight_bits(self) -> int:
        """quantize()'s default width for the int8 weights: 8 (-127..127), or 7 (-64..64) where
        only that width runs these kernels' fast int8 convs."""
        return 8

    def int8_note(self) -> str:
        """For explain() of an int8 model: how its int8 convs compute ("" if nothing to say)."""
        return ""

    def prepare_weight(
        self,
        weight: torch.Tensor,
        groups: int,
        stride: tuple[int, int],
        dilation: tuple[int, int],
        algorithm: str = cpu_conv_choice.AUTO,
    ) -> tuple[torch.Tensor, str, str]:
        """The folded conv weight in the layout the kernels read fastest, that layout's name
        (ops/weight_layout.py), and why that algorithm, for explain() ("" if there was no
        choice). Here the logical layout, every conv direct; with channels_last activations
        stored as (C_out, KH, KW, C_in) in memory, so each output channel's K axis is contiguous."""
        if self.keeps_channels_last(weight.device):
            weight = weight.contiguous(memory_format=torch.channels_last)
        return weight, weight_layout.LOGICAL, ""

    def choice_note(self) -> str:
        """For explain(): what this backend runs on here, once chosen ("" if nothing to say)."""
        return ""

    def keeps_channels_last(self, device: torch.device) -> bool:
        """Whether activations should be channels_last (NHWC) through the network on
        ``device``; if so, the model's first fused conv converts its input once."""
        return False


class ReferenceBackend(Backend):
    name = "reference"
    op_prefix = "reference"
    description = "plain PyTorch ops; the ground truth and the last fallback"

    def priority(self, device: torch.device) -> int:
        return 0

    def not_supported_reasons(self, device: torch.device, dtype: torch.dtype | None = None) -> list[str]:
        if device.type not in ("cpu", "cuda"):
            return [f"device type {device.type!r} is not supported (cpu or cuda)"]
        if device.type == "cuda" and not torch.cuda.is_available():
            return ["CUDA is not available"]
        return []

    def ops(self) -> FusedOps:
        return reference.register()

    def int8_ops(self) -> Int8Ops:
        return int8_reference.register()

    def keeps_channels_last(self, device: torch.device) -> bool:
        # oneDNN and cuDNN run channels_last convs faster, and no extra pass is spent on it:
        # the entry conv converts the input once, every op keeps the layout it is given.
        return True


class OneDnnBackend(Backend):
    """bfloat16 and int8 on CPUs with AMX: the convs through oneDNN's fused convs
    (ops/onednn.py), which run on AMX's tile multiplies, several times the speed of any
    AVX-512 kernel; the rest as the reference does it."""

    name = "onednn"
    op_prefix = "onednn"
    description = "bfloat16 and int8 convs through oneDNN's fused convs (bias, residual, ReLU, requantize), for CPUs with AMX"
    # The AMX feature each dtype's convs need to pay here: without it oneDNN's bf16 convs are
    # no faster than the C++ CPU kernels in float32, and its int8 convs than their VNNI ones.
    AMX_FEATURE = {torch.bfloat16: "amx_bf16", torch.int8: "amx_int8"}

    def priority(self, device: torch.device) -> int:
        return 15 if device.type == "cpu" else -20  # ahead of the C++ CPU kernels where it can run

    def not_supported_reasons(self, device: torch.device, dtype: torch.dtype | None = None) -> list[str]:
        if device.type != "cpu":
            return [f"oneDNN's fused conv takes CPU tensors, not {device.type}"]
        reasons = []
        if not torch.backends.mkldnn.is_available():
            reasons.append("this torch is built without oneDNN (torch.backends.mkldnn)")
        if dtype is not None and dtype not in self.AMX_FEATURE:
            reasons.append(f"it runs bfloat16 or int8 only, not {str(dtype).removeprefix('torch.')}")
        feature = self.AMX_FEATURE.get(dtype, "amx_bf16")
        if not _ext.cpu_features().get(feature):
            kind = "int8" if dtype == torch.int8 else "bfloat16"
            reasons.append(f"this CPU has no AMX ({feature}), where oneDNN's {kind} convs pay")
        if dtype == torch.int8 and (saturates := onednn.int8_unsupported_reason()):
            reasons.append(saturates)
        return reasons

    def ops(self) -> FusedOps:
        return onednn.register()

    def int8_ops(self) -> Int8Ops:
        return onednn.register_int8()

    def int8_note(self) -> str:
        return "int8 convs: oneDNN's (torch's onednn::qconv2d_pointwise), on this CPU's AMX tile multiplies (amx_int8)"

    def choice_note(self) -> str:
        return "bfloat16 convs: oneDNN's fused conv, on this CPU's AMX tile multiplies (amx_bf16)"

    def keeps_channels_last(self, device: torch.device) -> bool:
        return True


class ExtensionBackend(Backend):
    """Kernels compiled into fastresnet._C, registered there (TORCH_LIBRARY_IMPL) for the
    ``cpp_*`` op schemas when it loads; activations stay NHWC."""

    op_prefix = "cpp"

    def ops(self) -> FusedOps:
        _ext.extension()
        define_backend_ops(self.op_prefix)
        return backend_ops(self.op_prefix)

    def keeps_channels_last(self, device: torch.device) -> bool:
        return True


class CpuKernelsBackend(ExtensionBackend):
    """The C++ CPU kernels compiled into fastresnet._C (csrc/cpu), registered for the
    ``cpp_*`` op schemas on the CPU dispatch key, at the active instruction-set tier
    (_ext.cpu_isa()). Activations stay NHWC and conv weights are packed once, here, in the
    tier's layout for the algorithm cpu_conv_choice picks."""

    name = "cpp-cpu"
    description = "C++ CPU kernels from the fastresnet._C extension, at the widest instruction-set tier this CPU runs"

    def priority(self, device: torch.device) -> int:
        return 10 if device.type == "cpu" else -20  # after reference on other devices: never auto's note

    def not_supported_reasons(self, device: torch.device, dtype: torch.dtype | None = None) -> list[str]:
        if device.type != "cpu":
            return [f"the C++ CPU kernels take CPU tensors, not {device.type} (on CUDA: triton or cpp-cuda)"]
        reasons = _missing_kernels(self, "CPU")
        if reasons:
            return reasons
        tiers = _ext.cpu_tiers()
        runnable = [t for t in tiers if not t["unsupported_reason"]]
        if not tiers:
            reasons.append("the C++ CPU kernels are written for x86-64; this build has no tier for this CPU")
        elif not runnable:
            reasons.append(
                "this CPU runs none of the C++ CPU kernel tiers: "
                + "; ".join(f"{t['name']}: {t['unsupported_reason']}" for t in tiers)
            )
        elif dtype is not None and str(dtype).removeprefix("torch.") not in runnable[0]["dtypes"].split():
            # runnable[0]: the tier auto takes (FASTRESNET_CPU_ISA may cap it; optimize() checks that)
            *others, last = runnable[0]["dtypes"].split()
            taken = f"{', '.join(others)} or {last}" if others else last
            reasons.append(f"the C++ CPU kernels take {taken}, not {str(dtype).removeprefix('torch.')}")
        return reasons

    def prepare_weight(
        self,
        weight: torch.Tensor,
        groups: int,
        stride: tuple[int, int],
        dilation: tuple[int, int],
        algorithm: str = cpu_conv_choice.AUTO,
    ) -> tuple[torch.Tensor, str, str]:
        tier = active_cpu_tier()
        layout, why = cpu_conv_choice.choose_layout(
            tuple(weight.shape), groups, stride, dilation, tier, algorithm, weight.dtype
        )
        return weight_layout.pack(weight, groups, layout), layout, why

    def int8_ops(self) -> Int8Ops:
        _ext.extension()
        return cpp_int8.register()

    def int8_weight_layout(self, weight: torch.Tensor) -> str:
        return weight_layout.for_tier_int8(active_cpu_tier()["name"], weight)

    def int8_weight_bits(self) -> int:
        # Tiers without VNNI: VPMADDUBSW's int16 pairs hold u8 x s7 products only (vec_int8_avx2.h).
        return 7 if active_cpu_tier()["int8_narrow_conv"] else 8

    def int8_note(self) -> str:
        tier = active_cpu_tier()
        if tier["int8_narrow_conv"]:
            return (f"int8 convs: the {tier['name']} tier's, with 7-bit weights (-64..64) {tier['int8_narrow_conv']}; "
                    f"with wider weights {tier['int8_conv']}")  # fmt: skip
        return f"int8 convs: the {tier['name']} tier's, {tier['int8_conv']}"

    def choice_note(self) -> str:
        return _ext.cpu_isa_note()  # raises if FASTRESNET_CPU_ISA asks for a tier this CPU lacks


class CudaKernelsBackend(ExtensionBackend):
    """The CUDA C++ kernels compiled into fastresnet._C (csrc/cuda), registered for the same
    ``cpp_*`` op schemas on the CUDA dispatch key: the fallback where Triton cannot run."""

    name = "cpp-cuda"
    description = "CUDA C++ kernels from the fastresnet._C extension (compute capability 8.0+)"

    def priority(self, device: torch.device) -> int:
        return 10 if device.type == "cuda" else -20

    def not_supported_reasons(self, device: torch.device, dtype: torch.dtype | None = None) -> list[str]:
        if device.type != "cuda":
            return [f"the CUDA C++ kernels take CUDA tensors, not {device.type} (on CPU: cpp-cpu)"]
        return _missing_kernels(self, "CUDA") or _cuda_reasons(device)


class TritonBackend(Backend):
    name = "triton"
    op_prefix = "triton"
    description = "Triton kernels: implicit-GEMM conv with fused epilogue, pooling (CUDA; CPU under TRITON_INTERPRET=1)"

    def priority(self, device: torch.device) -> int:
        # First on CUDA; on CPU the interpreter is for testing, so `auto` never picks it.
        return 20 if device.type == "cuda" else -10

    def not_supported_reasons(self, device: torch.device, dtype: torch.dtype | None = None) -> list[str]:
        reasons = []
        if os.environ.get(ENV_DISABLE_TRITON) == "1":
            reasons.append(f"disabled by {ENV_DISABLE_TRITON}=1")
        try:
            import triton  # noqa: F401
        except ImportError as error:
            reasons.append(f"triton cannot be imported ({error})")
        if device.type == "cuda":
            if interpreting():
                reasons.append("TRITON_INTERPRET=1 makes Triton run on the CPU; unset it to run on CUDA")
            else:
                reasons += _cuda_reasons(device)
        elif device.type == "cpu":
            if not interpreting():
                reasons.append("on CPU tensors Triton runs only under its interpreter (TRITON_INTERPRET=1; slow, for tests)")
        else:
            reasons.append(f"device type {device.type!r} is not supported (cuda, or cpu under TRITON_INTERPRET=1)")
        return reasons

    def ops(self) -> FusedOps:
        from .triton.register import register

        return register()

    def keeps_channels_last(self, device: torch.device) -> bool:
        return True


BACKENDS: dict[str, Backend] = {
    b.name: b for b in (TritonBackend(), OneDnnBackend(), CpuKernelsBackend(), CudaKernelsBackend(), ReferenceBackend())
}
# Names that still work, with a DeprecationWarning: "cpp" was one backend for both the CPU
# and the CUDA C++ kernels; it means whichever of the two runs on the model's device.
DEPRECATED_NAMES = {"cpp": {"cpu": "cpp-cpu", "cuda": "cpp-cuda"}}


def resolve_name(name: str, device_type: str, stacklevel: int = 2) -> str:
    """``name``, or the backend a deprecated name stands for on ``device_type`` (warning)."""
    if name not in DEPRECATED_NAMES:
        return name
    new = DEPRECATED_NAMES[name].get(device_type, DEPRECATED_NAMES[name]["cpu"])
    warnings.warn(
        f"backend {name!r} is deprecated: the C++ kernels are now two backends, 'cpp-cpu' and 'cpp-cuda'; "
        f"using {new!r} for {device_type}",
        DeprecationWarning,
        stacklevel=stacklevel + 1,
    )
    return new


def cpu_kernels_backend() -> CpuKernelsBackend:
    return BACKENDS["cpp-cpu"]


@dataclass(frozen=True)
class BackendStatus:
    name: str
    device: str
    available: bool
    reasons: tuple[str, ...]
    priority: int
    description: str

    def __str__(self) -> str:
        state = "available" if self.available else "unavailable: " + "; ".join(self.reasons)
        return f"{self.name} on {self.device}: {state}"


def _device(device: torch.device | str | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def available_backends(device: torch.device | str | None = None) -> list[BackendStatus]:
    """Every backend, best first, with whether it can run on ``device`` (default: cuda if
    available, else cpu) and, if not, why."""
    dev = _device(device)
    statuses = []
    for backend in _by_priority(dev):
        reasons = tuple(backend.not_supported_reasons(dev))
        statuses.append(
            BackendStatus(backend.name, str(dev), not reasons, reasons, backend.priority(dev), backend.description)
        )
    return statuses


def select_backend(
    requested: str, device: torch.device, dtype: torch.dtype | None = None
) -> tuple[Backend, list[str]]:
    """The backend to use on ``device`` in ``dtype`` and notes on how it was chosen, for explain()."""
    notes = []
    if not isinstance(requested, str):
        raise TypeError(f"backend must be a string, one of {_valid_names()}; got {type(requested).__name__}")
    if requested == AUTO and (os.environ.get(ENV_BACKEND) or AUTO) != AUTO:  # set and not empty
        requested = os.environ[ENV_BACKEND]
        notes.append(f"backend chosen by {ENV_BACKEND}={requested}")
    requested = resolve_name(requested, device.type, stacklevel=3)
    if requested == AUTO:
        for backend in _by_priority(device):
            reasons = reasons_against(backend, device, dtype)
            if not reasons:
                return backend, notes
            notes.append(f"auto skipped {backend.name}: {'; '.join(reasons)}")
        raise RuntimeError(f"no fastresnet backend can run on {device}: " + "; ".join(notes))
    if requested not in BACKENDS:
        raise ValueError(f"unknown backend {requested!r}; valid backends are {_valid_names()}")
    backend = BACKENDS[requested]
    reasons = reasons_against(backend, device, dtype)
    if reasons:
        raise RuntimeError(f"backend {requested!r} cannot run on {device}: " + "; ".join(reasons))
    return backend, notes


def reasons_against(backend: Backend, device: torch.device, dtype: torch.dtype | None) -> list[str]:
    """Why ``backend`` cannot run on ``device`` in ``dtype`` (int8 included); empty if it can."""
    reasons = backend.not_supported_reasons(device, dtype)
    if dtype == torch.int8 and type(backend).int8_ops is Backend.int8_ops:
        reasons = [*reasons, "it has no int8 kernels"]
    return reasons


def active_cpu_tier() -> dict:
    """The active CPU tier (_ext.cpu_tiers()'s entry). Raises ValueError if
    FASTRESNET_CPU_ISA asks for one this CPU cannot run, RuntimeError if it runs none."""
    name = _ext.cpu_isa()
    tiers = {t["name"]: t for t in _ext.cpu_tiers()}
    if name not in tiers:
        reasons = cpu_kernels_backend().not_supported_reasons(torch.device("cpu"))
        raise RuntimeError(f"the C++ CPU kernels cannot run here: {'; '.join(reasons)}")
    return tiers[name]


def _missing_kernels(backend: Backend, dispatch_key: str) -> list[str]:
    """Why ``backend``'s ops have no kernels for ``dispatch_key``, asked of the dispatcher."""
    error = _ext.load_error()
    if error is not None:
        return [error]
    backend.ops()
    missing = kernel_missing(backend.op_prefix, dispatch_key)
    if missing:
        return [f"the compiled extension has no {dispatch_key} kernels for {', '.join(missing)}"]
    return []


def _cuda_reasons(device: torch.device) -> list[str]:
    """Why the GPU kernels (Triton's and the CUDA C++ ones, built for compute capability
    8.0+) cannot run on ``device``."""
    if not torch.cuda.is_available():
        return ["CUDA is not available"]
    capability = torch.cuda.get_device_capability(device)
    if capability < (8, 0):
        shown = ".".join(map(str, capability))
        return [f"the kernels need compute capability 8.0 or newer, this GPU has {shown}"]
    return []


def _by_priority(device: torch.device) -> list[Backend]:
    return sorted(BACKENDS.values(), key=lambda b: -b.priority(device))


def _valid_names() -> str:
    return ", ".join(repr(n) for n in [AUTO, *BACKENDS])
