"""What optimize() did to a model, kept on the model and printed by explain()."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

INFO_ATTRIBUTE = "_fastresnet_info"


@dataclass
class FusedRow:
    """One fused op in the optimized model and the original modules it replaces."""

    module: str  # its name in the optimized model
    replaces: list[str]  # names in the original model ("+ add" marks a fused residual add)
    pattern: str  # e.g. "conv+bn+relu", "conv+bn+add+relu", "maxpool"
    op: str
    why: str = ""  # for a conv whose backend chose among algorithms: why this one


@dataclass
class EagerRow:
    """A module of the original model that still runs eagerly, and why."""

    module: str
    kind: str
    reason: str


@dataclass
class OptimizationInfo:
    backend: str
    dtype: torch.dtype
    device: torch.device
    fused: list[FusedRow] = field(default_factory=list)
    eager: list[EagerRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # e.g. why `auto` skipped a backend


class Explanation:
    """explain()'s answer: prints as a table; ``info`` holds the rows for programs."""

    def __init__(self, info: OptimizationInfo):
        self.info = info

    def __str__(self) -> str:
        info = self.info
        lines = [
            f"fastresnet: backend={info.backend}, dtype={_name(info.dtype)}, "
            f"device={info.device}; {len(info.fused)} fused ops, {len(info.eager)} modules left eager"
        ]
        if info.dtype == torch.int8:
            lines.append(
                "dtype: the fused layers below run in int8 (uint8 activations, int8 weights, int32 sums); "
                "the eager ones stay in float32"
            )
        elif info.dtype != torch.float32:
            winograd = [r for r in info.fused if (r.why or "").startswith("F(")]
            kept = (
                f"the {len(winograd)} Winograd convs keep their transformed weight and products in float32, "
                "rounding only at the store (the transform needs more bits than the dtype holds)"
                if winograd
                else "nothing stays in float32"
            )
            lines.append(
                f"dtype: every layer below runs in {_name(info.dtype)}, the eager ones too (the model was cast); "
                f"the convs, pools and Linear accumulate in float32; {kept}"
            )
        lines += [f"note: {note}" for note in info.notes]
        if info.fused:
            lines += ["", "Fused:"]
            header, rows = ["module", "pattern", "op", "replaces"], [[r.module, r.pattern, r.op, " + ".join(r.replaces)] for r in info.fused]
            if any(r.why for r in info.fused):
                header, rows = header + ["why this algorithm"], [row + [r.why] for row, r in zip(rows, info.fused)]
            lines += _table(header, rows)
        if info.eager:
            lines += ["", "Left eager:"]
            lines += _table(["module", "type", "reason"], [[r.module, r.kind, r.reason] for r in info.eager])
        return "\n".join(lines)

    __repr__ = __str__


def _name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]

    def line(cells):
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"

    return [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [line(r) for r in rows]


def explain(model: nn.Module) -> Explanation:
    """Per layer: what was fused into what, on which backend and dtype, what stayed eager and why."""
    info = getattr(model, INFO_ATTRIBUTE, None)
    if not isinstance(info, OptimizationInfo):
        raise ValueError(
            f"explain() expects a model returned by fastresnet.optimize(), got a {type(model).__name__} "
            "that was not optimized"
        )
    return Explanation(info)
