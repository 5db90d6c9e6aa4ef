"""OpHolder: a module that calls one backend op, and survives pickling and deepcopy."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..ops.schemas import INT8_SCHEMAS


class OpHolder(nn.Module):
    """Holds ``self.op`` (an OpOverload) and ``self.backend`` (its backend's name).

    OpOverloads cannot be pickled, so torch.save(model) stores the op's qualified name and
    loading resolves it again, registering the backend's ops first if needed.
    """

    def __init__(self, op: Callable, backend: str):
        super().__init__()
        self.op = op
        self.backend = backend

    def extra_repr(self) -> str:
        return f"backend={self.backend!r}"

    def __getstate__(self):
        state = self.__dict__.copy()
        state["op"] = self.op._name  # e.g. "fastresnet::reference_conv2d_bias_act"
        return state

    def __setstate__(self, state):
        from ..backends import BACKENDS, resolve_name  # here, not at import: backends imports this package

        # Saved before a backend was renamed: the name it has now, by the device of its tensors.
        cuda = any(t.is_cuda for t in state.get("_buffers", {}).values() if t is not None)
        state = dict(state, backend=resolve_name(state["backend"], "cuda" if cuda else "cpu"))
        backend = BACKENDS[state["backend"]]
        backend.ops()  # defines and registers the backend's ops
        namespace, name = state["op"].split("::")
        if name.removeprefix(f"{backend.op_prefix}_") in INT8_SCHEMAS:
            backend.int8_ops()
        state = dict(state, op=getattr(getattr(torch.ops, namespace), name).default)
        super().__setstate__(state)
