"""The dtype boundary of a model optimized to bfloat16 or float16: float32 in, float32 out.

So that an fp32 pipeline switches with one argument (``optimize(model, dtype=torch.bfloat16)``),
the optimized model converts a floating input of another dtype to its own once, on entry,
and returns its output in the input's dtype; an input already in the model's dtype passes
through untouched and gives output in that dtype. Done with forward hooks on the model's
root, so the model keeps its class and attributes (``model.fc`` is still there), and with
module-level functions, so that the model still pickles and deep-copies.

The input's dtype is kept per thread, as a stack, from the pre-hook to the hook after
forward: the pre-hook has replaced the input by then, and calls may nest or run on several
threads at once.
"""

from __future__ import annotations

import itertools
import threading

import torch
from torch import nn

_calls = threading.local()  # .dtypes: {id(model): [input dtype of each call in flight]}


def _model_dtype(model: nn.Module) -> torch.dtype:
    # Asked on every call, so that it follows model.to(...); the first floating tensor is
    # the stem's folded weight, so this stops at once.
    tensors = itertools.chain(model.buffers(), model.parameters())
    return next(t.dtype for t in tensors if t.is_floating_point())


def _convert_input(model: nn.Module, args: tuple):
    if not hasattr(_calls, "dtypes"):
        _calls.dtypes = {}
    first = args[0] if args else None
    given = first.dtype if isinstance(first, torch.Tensor) and first.is_floating_point() else None
    _calls.dtypes.setdefault(id(model), []).append(given)  # before any raise: _restore_output pops it
    dtype = _model_dtype(model)
    if isinstance(first, torch.Tensor) and not first.is_floating_point():
        name = str(dtype).removeprefix("torch.")
        raise TypeError(
            f"the optimized model ({name}) takes a floating-point input (float32, converted once, "
            f"or {name} as it is); got {first.dtype}"
        )
    if given is None or given == dtype:
        return None
    return (first.to(dtype), *args[1:])


def _restore_output(model: nn.Module, args: tuple, output):
    stack = _calls.dtypes[id(model)]
    given = stack.pop()
    if not stack:
        del _calls.dtypes[id(model)]
    if given is None:
        return None
    return _cast_tensors(output, given)


def _cast_tensors(value, dtype: torch.dtype):
    if isinstance(value, torch.Tensor):
        return value.to(dtype) if value.is_floating_point() else value
    if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
        return type(value)(_cast_tensors(v, dtype) for v in value)
    if isinstance(value, dict):
        return {k: _cast_tensors(v, dtype) for k, v in value.items()}
    return value


def add_dtype_boundary(model: nn.Module) -> None:
    """Make ``model`` (already in its reduced dtype) take and give back its input's dtype."""
    model.register_forward_pre_hook(_convert_input)
    model.register_forward_hook(_restore_output, always_call=True)


def has_dtype_boundary(model: nn.Module) -> bool:
    return _convert_input in model._forward_pre_hooks.values()
