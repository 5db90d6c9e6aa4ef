"""Register the Triton kernels as the ``fastresnet::triton_*`` ops.

On CUDA tensors they run compiled; on CPU tensors only under Triton's interpreter
(TRITON_INTERPRET=1, set before the first optimize(backend="triton")), which is how the
whole path is tested on machines without a GPU.
"""

from __future__ import annotations

import functools

import torch

from ..ops import FusedOps, schemas
from . import configs

BACKEND = "triton"


def _interpreter_only(kernel):
    @functools.wraps(kernel)
    def run(*args):
        if not configs.interpreting():
            raise RuntimeError(
                f"{schemas.qualname(BACKEND, kernel.__name__)}: Triton kernels run on CPU tensors only under "
                "the interpreter (TRITON_INTERPRET=1); use a CUDA tensor or another backend"
            )
        return kernel(*args)

    return run


def register() -> FusedOps:
    """Define the Triton ops (once) and return them."""
    if schemas.define_backend_ops(BACKEND):
        from . import conv, pool  # imported here: triton.jit reads TRITON_INTERPRET when they load

        for op in schemas.SCHEMAS:  # each op's kernel is the function of its name in conv or pool
            kernel = getattr(conv, op, None) or getattr(pool, op)
            torch.library.impl(schemas.qualname(BACKEND, op), "CUDA", kernel)
            torch.library.impl(schemas.qualname(BACKEND, op), "CPU", _interpreter_only(kernel))
    return schemas.backend_ops(BACKEND)
