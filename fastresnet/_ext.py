"""Load the compiled extension, keeping the error if it cannot be loaded, and pick the CPU
kernels' instruction-set tier.

The package must import without the extension (a failed or skipped build), so nothing here
raises at import: backends that need it read ``load_error()`` and report it as their reason.

The CPU kernels are compiled once per tier (``avx2``, ``avx512``; none off x86-64). When the
extension loads, the widest tier this CPU runs becomes the active one, unless the environment
variable FASTRESNET_CPU_ISA names another: a tier the CPU lacks is an error (raised by
``cpu_isa()``, so by optimize() on CPU) that names what the CPU has.
"""

from __future__ import annotations

import functools
import os
from types import ModuleType

ENV_CPU_ISA = "FASTRESNET_CPU_ISA"
# The CPU flags worth naming when a tier is refused, as /proc/cpuinfo spells them.
_SHOWN_FEATURES = ("avx2", "fma", "avx512f", "avx512dq", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16")


@functools.cache
def _load() -> tuple[ModuleType | None, str | None]:
    try:
        import torch  # noqa: F401  (the extension links against libtorch: load it first)

        from . import _C
    except ImportError as error:
        return None, (
            f"the compiled extension fastresnet._C could not be loaded ({error}); "
            "reinstall with `pip install --no-build-isolation -e .` to build it"
        )
    return _C, None


def extension() -> ModuleType | None:
    module = _load()[0]
    if module is not None:
        _apply_cpu_isa_choice()
    return module


def load_error() -> str | None:
    return _load()[1]


def build_info() -> dict:
    """What the extension was built with, or {} if it is not loaded."""
    module = extension()
    return dict(module.build_info()) if module is not None else {}


def cpu_tiers() -> list[dict]:
    """The compiled CPU kernel tiers, widest first: name, features, lanes (fp32 per vector),
    block (output channels per weight block), unsupported_reason ("" if this CPU runs it)."""
    module = _load()[0]
    return [dict(t) for t in module.cpu_tiers()] if module is not None else []


def cpu_features() -> dict[str, bool]:
    """This CPU's features (CPUID) and whether the OS saves the ymm/zmm state (XGETBV)."""
    module = _load()[0]
    return dict(module.cpu_features()) if module is not None else {}


def resolve_cpu_isa(tiers: list[dict], requested: str | None, features: dict[str, bool]) -> str | None:
    """The tier to use: ``requested`` if given (it must be compiled and run here, else a
    ValueError naming what the CPU has), else the widest that runs here, else None."""
    runnable = [t["name"] for t in tiers if not t["unsupported_reason"]]
    if not requested:
        return runnable[0] if runnable else None
    by_name = {t["name"]: t for t in tiers}
    has = " ".join(f for f in _SHOWN_FEATURES if features.get(f)) or "none of " + " ".join(_SHOWN_FEATURES)
    what_runs = f"this CPU runs {', '.join(runnable) if runnable else 'no tier'} (its flags: {has})"
    if requested not in by_name:
        raise ValueError(
            f"{ENV_CPU_ISA}={requested} is not a CPU kernel tier of this build; it has "
            f"{', '.join(by_name) or 'none'}, and {what_runs}"
        )
    if by_name[requested]["unsupported_reason"]:
        raise ValueError(
            f"{ENV_CPU_ISA}={requested} asks for a tier this CPU cannot run: "
            f"{by_name[requested]['unsupported_reason']}; {what_runs}"
        )
    return requested


_choice: dict = {}  # "isa": the active tier (or None), or "error": why FASTRESNET_CPU_ISA was refused


def _apply_cpu_isa_choice() -> None:
    if _choice:
        return
    try:
        set_cpu_isa(resolve_cpu_isa(cpu_tiers(), os.environ.get(ENV_CPU_ISA) or None, cpu_features()))
    except ValueError as error:
        _choice["error"] = str(error)


def set_cpu_isa(name: str | None) -> None:
    """Make ``name`` the active CPU tier, for the kernels and for the weight layouts
    optimize() chooses (tests and the benchmark use this; users set FASTRESNET_CPU_ISA)."""
    module = _load()[0]
    if name is not None:
        if module is None:
            raise RuntimeError(load_error())
        module.set_cpu_isa(name)  # refuses a tier this CPU cannot run
    _choice.clear()
    _choice["isa"] = name


def cpu_isa() -> str | None:
    """The active CPU tier ("avx2", "avx512"), or None if the CPU runs none or the extension
    is not loaded. Raises ValueError if FASTRESNET_CPU_ISA names a tier the CPU cannot run."""
    if extension() is None:
        return None
    if "error" in _choice:
        raise ValueError(_choice["error"])
    return _choice["isa"]


def cpu_isa_note() -> str:
    """For explain(): which CPU tier the kernels run, and why that one."""
    isa = cpu_isa()
    requested = os.environ.get(ENV_CPU_ISA)
    if requested:
        return f"CPU kernels: the {isa} tier, chosen by {ENV_CPU_ISA}={requested}"
    return f"CPU kernels: the {isa} tier, the widest this CPU runs ({ENV_CPU_ISA} can cap it)"
