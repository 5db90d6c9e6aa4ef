"""Named conv weight layouts: what a fused conv's weight tensor holds, said by name.

``optimize()`` chooses a layout per conv and records it on the module (``FusedConv2d.
weight_layout``); the conv op receives it with the weight, so no code infers a layout from a
tensor's number of dimensions. ``"oihw"`` is the logical weight (C_out, C_in/groups, KH, KW),
in any memory format, and every backend reads it. The other layouts belong to the C++ CPU
kernels, and everything about them (names, tiers, packed shapes, packing, unpacking, the
Winograd transform) is defined once, in csrc/cpu/layouts.h; this module asks the extension.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

LOGICAL = "oihw"


@dataclass(frozen=True)
class WeightLayout:
    name: str
    tier: str | None  # the CPU tier whose kernels read it; None for the logical layout
    algorithm: str  # "direct", or "winograd F(2x2,3x3)" / "winograd F(4x4,3x3)"
    winograd_tile: int | None  # m of F(m x m, 3x3), or None for a direct conv
    # The weight's: "float32", "bfloat16", or for int8 convs "int8" or "int16" (widened, on
    # tiers without VNNI); None (logical): any.
    dtype: str | None = None
    # The activations' dtypes its kernels take: the weight's, and for Winograd (a float32
    # weight) bfloat16 too; () for the logical layout: any.
    activation_dtypes: tuple[str, ...] = ()
    pads_input_channel: bool = False  # bf16 with odd C_in/groups: one zero channel appended per group
    # The int8 layouts': the largest |weight| their kernels take ("int8-7bit": 64, where VPMADDUBSW's
    # int16 pairs cannot saturate; "int8-blocked": 127, any int8 weight quantize() makes); else None.
    int8_weight_bound: int | None = None

    def __str__(self) -> str:
        return self.name


_LOGICAL = WeightLayout(LOGICAL, None, "direct", None)


@functools.cache
def _packed_layouts() -> dict[str, WeightLayout]:
    from .. import _ext  # here: ops must import without the extension

    module = _ext.extension()
    return {} if module is None else {d["name"]: WeightLayout(**d) for d in module.weight_layouts() if d["tier"]}


def parse(name: str, where: str = "weight_layout") -> WeightLayout:
    """The layout called ``name``; ValueError listing the known ones if there is none."""
    if name == LOGICAL:
        return _LOGICAL
    layout = _packed_layouts().get(name)
    if layout is None:
        known = ", ".join(repr(n) for n in [LOGICAL, *_packed_layouts()])
        raise ValueError(f"{where}: unknown weight layout {name!r}; this build has {known}")
    return layout


def for_tier(tier: str, algorithm: str, dtype: torch.dtype = torch.float32, in_channels_per_group: int = 0) -> str:
    """The name of ``tier``'s layout for ``algorithm`` ("direct", "winograd2x2", "winograd4x4")
    over ``dtype`` activations. bfloat16 direct has its own layouts, chosen by the extension
    (tiers with bf16 dot products pair input channels, with one for odd ``in_channels_per_group``;
    tiers that widen pair output channels); bfloat16 Winograd shares the float32 layouts."""
    if algorithm == "direct" and dtype == torch.bfloat16:
        from .. import _ext

        return _ext.extension().bf16_conv_layout(tier, in_channels_per_group)
    wanted = {"direct": None, "winograd2x2": 2, "winograd4x4": 4}[algorithm]
    dtype_name = str(dtype).removeprefix("torch.")
    (name,) = [
        n
        for n, layout in _packed_layouts().items()
        if layout.tier == tier
        and layout.winograd_tile == wanted
        and dtype_name in layout.activation_dtypes
    ]
    return name


def for_tier_int8(tier: str, weight: torch.Tensor | None = None) -> str:
    """The name of ``tier``'s int8 conv layout (C_in padded to 4 per group) for the int8
    ``weight``: of those whose kernels take its largest |w|, the one with the narrowest bound
    (the faster kernels: "int8-7bit" where the tier has it); without a weight, the one that takes any."""
    bounds = sorted((layout.int8_weight_bound, n) for n, layout in _packed_layouts().items() if layout.tier == tier and layout.int8_weight_bound)
    largest = 127 if weight is None or not weight.numel() else int(weight.to(torch.int16).abs().max())
    return next((n for bound, n in bounds if bound >= largest), bounds[-1][1])


def geometry(where: str, layout: WeightLayout, weight: torch.Tensor, bias: torch.Tensor, groups: int) -> tuple:
    """(C_out, C_in/groups, KH, KW) of ``weight`` laid out as ``layout``; C_out is the bias's
    length for the packed layouts. Raises ValueError naming the expected shape."""
    if layout.tier is None:
        if weight.dim() != 4:
            raise ValueError(
                f"{where}: expected a 4-D weight (C_out, C_in/groups, KH, KW) for layout {LOGICAL!r}, "
                f"got shape {tuple(weight.shape)}"
            )
        return tuple(weight.shape)
    if bias.dim() != 1:
        raise ValueError(f"{where}: expected a 1-D bias (C_out,), got shape {tuple(bias.shape)}")
    from .. import _ext

    try:
        return tuple(
            _ext.extension().conv_weight_geometry(layout.name, [int(s) for s in weight.shape], int(bias.shape[0]), groups)
        )
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None


def pack(weight: torch.Tensor, groups: int, name: str) -> torch.Tensor:
    """The logical ``weight`` in layout ``name``."""
    from .. import _ext

    return weight if name == LOGICAL else _ext.extension().pack_conv_weight(weight, groups, name)


def unpack(weight: torch.Tensor, name: str, c_out: int, groups: int) -> torch.Tensor:
    """The logical (C_out, C_in/groups, KH, KW) weight back from one in layout ``name``."""
    from .. import _ext

    return weight if name == LOGICAL else _ext.extension().unpack_conv_weight(weight, name, c_out, groups)
