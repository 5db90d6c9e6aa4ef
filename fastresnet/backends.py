"""The backend registry: what exists, what can run on a device and why not, and the choice.

Each backend answers ``not_supported_reasons(device)``; an empty list means it can run.
``auto`` takes the highest-priority backend that can run and records why it skipped the
others; an explicitly requested backend that cannot run raises with all its reasons.
The environment variable FASTRESNET_BACKEND, when set, replaces ``auto`` (an explicit
``backend=`` argument still wins). Nothing here touches a GPU at import time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from . import _ext
from .ops import FusedOps, backend_ops, define_backend_ops, reference

ENV_BACKEND = "FASTRESNET_BACKEND"
AUTO = "auto"


class Backend:
    name: str
    priority: int  # higher wins under `auto`
    description: str

    def not_supported_reasons(self, device: torch.device) -> list[str]:
        raise NotImplementedError

    def ops(self) -> FusedOps:
        raise NotImplementedError


class ReferenceBackend(Backend):
    name = "reference"
    priority = 0
    description = "plain PyTorch ops; the ground truth and the last fallback"

    def not_supported_reasons(self, device: torch.device) -> list[str]:
        if device.type not in ("cpu", "cuda"):
            return [f"device type {device.type!r} is not supported (cpu or cuda)"]
        return []

    def ops(self) -> FusedOps:
        return reference.register()


class CppBackend(Backend):
    """Kernels compiled into fastresnet._C, registered for the ``cpp_*`` op schemas."""

    name = "cpp"
    priority = 10
    description = "compiled C++ (CPU) and CUDA C++ kernels from the fastresnet._C extension"

    def not_supported_reasons(self, device: torch.device) -> list[str]:
        error = _ext.load_error()
        if error is not None:
            return [error]
        kernels = _ext.build_info().get("kernels", [])
        if not any(kernel.startswith(f"{device.type}:") for kernel in kernels):
            return [f"the compiled extension has no fused kernels for {device.type} (build_info()['kernels'] = {kernels})"]
        return []

    def ops(self) -> FusedOps:
        define_backend_ops(self.name)
        return backend_ops(self.name)


BACKENDS: dict[str, Backend] = {b.name: b for b in (CppBackend(), ReferenceBackend())}


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
    for backend in sorted(BACKENDS.values(), key=lambda b: -b.priority):
        reasons = tuple(backend.not_supported_reasons(dev))
        statuses.append(
            BackendStatus(backend.name, str(dev), not reasons, reasons, backend.priority, backend.description)
        )
    return statuses


def select_backend(requested: str, device: torch.device) -> tuple[Backend, list[str]]:
    """The backend to use on ``device`` and notes on how it was chosen, for explain()."""
    notes = []
    if not isinstance(requested, str):
        raise TypeError(f"backend must be a string, one of {_valid_names()}; got {type(requested).__name__}")
    if requested == AUTO and os.environ.get(ENV_BACKEND, AUTO) != AUTO:
        requested = os.environ[ENV_BACKEND]
        notes.append(f"backend chosen by {ENV_BACKEND}={requested}")
    if requested == AUTO:
        for backend in sorted(BACKENDS.values(), key=lambda b: -b.priority):
            reasons = backend.not_supported_reasons(device)
            if not reasons:
                return backend, notes
            notes.append(f"auto skipped {backend.name}: {'; '.join(reasons)}")
        raise RuntimeError(f"no fastresnet backend can run on {device}: " + "; ".join(notes))
    if requested not in BACKENDS:
        raise ValueError(f"unknown backend {requested!r}; valid backends are {_valid_names()}")
    backend = BACKENDS[requested]
    reasons = backend.not_supported_reasons(device)
    if reasons:
        raise RuntimeError(f"backend {requested!r} cannot run on {device}: " + "; ".join(reasons))
    return backend, notes


def _valid_names() -> str:
    return ", ".join(repr(n) for n in [AUTO, *BACKENDS])
