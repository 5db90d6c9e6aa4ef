"""Named conv weight layouts: what a fused conv's weight tensor holds, said by name.

``optimize()`` chooses a layout per conv and records it on the module (``FusedConv2d.
weight_layout``); the conv op receives it with the weight, so no code infers a layout from a
tensor's number of dimensions. Names:

- ``"oihw"``: the logical weight (C_out, C_in/groups, KH, KW), in any memory format. Every
  backend reads it.
- ``"<tier>:blocked"``: the C++ CPU kernels' direct-conv layout for tier ``<tier>`` (avx2,
  avx512): (groups, ceil(C_out/groups/B), KH, KW, C_in/groups, B), B output channels per
  block (two vectors of the tier: 16 on avx2, 32 on avx512), zero-padded to whole blocks.
- ``"<tier>:winograd2x2"``, ``"<tier>:winograd4x4"``: the weight transformed for Winograd
  F(m x m, 3x3), U = G g G^T: (T, T, C_out/B, C_in, B) with T = m + 2 (3x3, groups=1).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

LOGICAL = "oihw"
_KINDS = ("blocked", "winograd2x2", "winograd4x4")

# G of F(m x m, 3x3) (U = G g G^T), as csrc/cpu/ops.cpp uses it: for unpacking a weight.
_WINOGRAD_G = {
    2: [[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]],
    4: [
        [1 / 4, 0.0, 0.0],
        [-1 / 6, -1 / 6, -1 / 6],
        [-1 / 6, 1 / 6, -1 / 6],
        [1 / 24, 1 / 12, 1 / 6],
        [1 / 24, -1 / 12, 1 / 6],
        [0.0, 0.0, 1.0],
    ],
}


@dataclass(frozen=True)
class WeightLayout:
    tier: str | None  # the CPU tier whose kernels read it; None for the logical layout
    kind: str  # "logical", "blocked", "winograd2x2" or "winograd4x4"

    @classmethod
    def parse(cls, name: str, where: str = "weight_layout") -> "WeightLayout":
        if name == LOGICAL:
            return cls(None, "logical")
        tier, _, kind = str(name).partition(":")
        if not tier or kind not in _KINDS:
            raise ValueError(
                f"{where}: unknown weight layout {name!r}; expected {LOGICAL!r} or '<tier>:<kind>' with kind one of "
                f"{', '.join(_KINDS)}"
            )
        return cls(tier, kind)

    def __str__(self) -> str:
        return LOGICAL if self.tier is None else f"{self.tier}:{self.kind}"

    @property
    def winograd_tile(self) -> int | None:
        """m of F(m x m, 3x3), or None for a direct conv."""
        return int(self.kind[len("winograd")]) if self.kind.startswith("winograd") else None

    @property
    def algorithm(self) -> str:
        """How the conv runs: "direct", or "winograd F(2x2,3x3)" / "winograd F(4x4,3x3)"."""
        m = self.winograd_tile
        return "direct" if m is None else f"winograd F({m}x{m},3x3)"


def geometry(where: str, layout: WeightLayout, weight: torch.Tensor, bias: torch.Tensor, groups: int) -> tuple:
    """(C_out, C_in/groups, KH, KW) of ``weight`` laid out as ``layout``; C_out is the bias's
    length for the packed layouts. Raises ValueError naming the expected shape."""
    if layout.kind == "logical":
        if weight.dim() != 4:
            raise ValueError(
                f"{where}: expected a 4-D weight (C_out, C_in/groups, KH, KW) for layout {LOGICAL!r}, "
                f"got shape {tuple(weight.shape)}"
            )
        return tuple(weight.shape)
    if bias.dim() != 1:
        raise ValueError(f"{where}: expected a 1-D bias (C_out,), got shape {tuple(bias.shape)}")
    c_out = bias.shape[0]
    m = layout.winograd_tile
    if m is not None:
        t = m + 2
        block = weight.shape[-1] if weight.dim() == 5 else None
        if (
            weight.dim() == 5
            and tuple(weight.shape[:2]) == (t, t)
            and weight.shape[2] * block == c_out
            and groups == 1
        ):
            return c_out, weight.shape[3], 3, 3
        raise ValueError(
            f"{where}: expected a weight laid out as {layout}, ({t}, {t}, C_out/B, C_in, B) with groups=1 for "
            f"C_out={c_out} (the bias's length); got {tuple(weight.shape)} with groups={groups}"
        )
    if weight.dim() == 6 and groups >= 1 and c_out % groups == 0:
        g, blocks, kh, kw, c_in_per_group, block = weight.shape
        if g == groups and blocks == -(-(c_out // groups) // block):
            return c_out, c_in_per_group, kh, kw
    raise ValueError(
        f"{where}: expected a weight laid out as {layout}, (groups={groups}, ceil(C_out/groups/B), KH, KW, "
        f"C_in/groups, B) for C_out={c_out} (the bias's length); got {tuple(weight.shape)}"
    )


def unpack(weight: torch.Tensor, layout: WeightLayout, c_out: int, groups: int) -> torch.Tensor:
    """The logical (C_out, C_in/groups, KH, KW) weight back from a packed one: exact for the
    blocked layouts; for Winograd, g = G+ U G+^T with G's left inverse, in float64 (exact
    up to the rounding of U)."""
    if layout.kind == "logical":
        return weight
    m = layout.winograd_tile
    if m is not None:
        t, _, blocks, c_in, block = weight.shape
        u = weight.permute(2, 4, 3, 0, 1).reshape(c_out, c_in, t, t).to(torch.float64)
        g_pinv = torch.linalg.pinv(torch.tensor(_WINOGRAD_G[m], dtype=torch.float64))
        return (g_pinv @ u @ g_pinv.T).to(weight.dtype)
    g, blocks, kh, kw, c_in_g, block = weight.shape
    w = weight.permute(0, 1, 5, 4, 2, 3).reshape(g, blocks * block, c_in_g, kh, kw)
    return w[:, : c_out // groups].reshape(c_out, c_in_g, kh, kw).contiguous()
