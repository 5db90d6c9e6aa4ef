"""Load the compiled extension, keeping the error if it cannot be loaded.

The package must import without it (a failed or skipped build), so nothing here raises:
backends that need it read ``load_error()`` and report it as their reason.
"""

from __future__ import annotations

import functools
from types import ModuleType


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
