"""Load the compiled extension, keeping the error if it cannot be loaded, and ask it about
the CPU kernels' instruction-set tiers.

The package must import without the extension (a failed or skipped build), so nothing here
raises at import: backends that need it read ``load_error()`` and report it as their reason.

The tiers, the CPU's features and the active tier are the extension's (csrc/cpu/tiers.h):
it reads CPUID and FASTRESNET_CPU_ISA once, when it loads, and this module keeps no copy.
"""

from __future__ import annotations

import functools
from types import ModuleType

ENV_CPU_ISA = "FASTRESNET_CPU_ISA"


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
    return _load()[0]


def load_error() -> str | None:
    return _load()[1]


def build_info() -> dict:
    """What the extension was built with, or {} if it is not loaded."""
    module = extension()
    return dict(module.build_info()) if module is not None else {}


def cpu_tiers() -> list[dict]:
    """The compiled CPU kernel tiers, highest rank first, as the extension describes them:
    name, features, os_state, rank, dtypes, lanes (fp32 per vector), block (output channels
    per weight block), the Winograd channel limits, and unsupported_reason ("" if this CPU
    runs it)."""
    module = extension()
    return [dict(t) for t in module.cpu_tiers()] if module is not None else []


def tier_runs_here(name: str | None) -> bool:
    """Whether this build has the CPU tier ``name`` and this CPU runs it."""
    return any(t["name"] == name and not t["unsupported_reason"] for t in cpu_tiers())


def cpu_features() -> dict[str, bool]:
    """This CPU's features (CPUID) and whether the OS saves the ymm/zmm state (XGETBV)."""
    module = extension()
    return dict(module.cpu_features()) if module is not None else {}


def set_cpu_isa(name: str | None) -> None:
    """Make ``name`` the active CPU tier, for the kernels and for the weight layouts
    optimize() chooses; None returns to the tier chosen at load. Raises ValueError naming
    what the CPU runs if this build lacks the tier or the CPU cannot run it."""
    module = extension()
    if module is None:
        raise RuntimeError(load_error())
    try:
        module.set_cpu_isa(name or "")
    except (ValueError, RuntimeError) as error:
        raise ValueError(str(error)) from None


def cpu_isa() -> str | None:
    """The active CPU tier's name, or None if the extension is not loaded or the CPU runs
    none. Raises ValueError if FASTRESNET_CPU_ISA names a tier this CPU cannot run."""
    module = extension()
    if module is None:
        return None
    name = module.cpu_isa()
    if name is None and any(not t["unsupported_reason"] for t in module.cpu_tiers()):
        raise ValueError(module.cpu_isa_error())  # a tier runs here: FASTRESNET_CPU_ISA was refused
    return name


def cpu_isa_note() -> str:
    """For explain(): which CPU tier the kernels run, and why that one."""
    isa = cpu_isa()
    return f"CPU kernels: the {isa} tier, {extension().cpu_isa_choice()}"
