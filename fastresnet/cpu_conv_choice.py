"""Which layout, and so which algorithm, the C++ CPU kernels use for each conv, and why.

A rule over the layer's shape with per-tier limits measured per layer (benchmarks/
test_cpu_conv.py) and kept with each tier (csrc/cpu/tier_<name>.cpp, read here through
_ext.cpu_tiers()), not a timing in optimize(): the spatial size is not known when the model
is optimized, and the rule keeps optimize() fast and its choice reproducible. Winograd
F(2x2, 3x3) takes the 3x3 stride-1 convs the tier's Winograd kernels fit, up to the tier's
F(2x2) channel limit; F(4x4, 3x3), with 36 multiplies per 16 outputs instead of 64, takes the
narrower ones, up to its own limit, where its larger tiles still find enough of them: in
ResNets the channel count fixes the map size (64 at 56x56 ... 512 at 7x7, where a 4x4 tile
wastes 30% of its outputs). Everything else runs direct.

The user picks how far to go, with ``optimize(model, conv_algorithm=...)``:

- ``"auto"``: the rule above, the fastest measured;
- ``"winograd2x2"``: F(2x2) where the rule would take either tile, never F(4x4), whose error
  is 10-45x eager's per layer (about 1e-5 of the output scale on whole models); F(2x2)'s is
  at or below direct's;
- ``"direct"``: every conv direct, eager-level error.

FASTRESNET_WINOGRAD=0 in the environment makes every conv direct, whatever was asked.
"""

from __future__ import annotations

import os

import torch

from . import _ext
from .ops import weight_layout

ENV_WINOGRAD = "FASTRESNET_WINOGRAD"
AUTO, WINOGRAD_2X2, DIRECT = "auto", "winograd2x2", "direct"
ALGORITHMS = (AUTO, WINOGRAD_2X2, DIRECT)


def check_algorithm(algorithm: str) -> str:
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown conv_algorithm {algorithm!r}; valid choices are {', '.join(map(repr, ALGORITHMS))}")
    return algorithm


def _channels(product: int) -> str:
    side = round(product**0.5)
    return f"{side}x{side}" if side * side == product else str(product)


def choose_layout(
    weight_shape: tuple,
    groups: int,
    stride: tuple[int, int],
    dilation: tuple[int, int],
    tier: dict,
    algorithm: str,
    dtype: torch.dtype = torch.float32,
) -> tuple[str, str]:
    """(layout name, why) for a conv of logical weight shape (C_out, C_in/groups, KH, KW) on
    ``tier`` (an entry of _ext.cpu_tiers()), as ``algorithm`` allows, over ``dtype``
    activations. bfloat16 follows the same rule with the tier's bf16 limits: its Winograd keeps
    the transformed weight and products in fp32, so it rounds only where direct bf16 does (at
    the store)."""
    chosen, why = _choose_algorithm(weight_shape, groups, stride, dilation, tier, algorithm, dtype == torch.bfloat16)
    if dtype == torch.bfloat16 and chosen == DIRECT:
        why += f"; bf16 on {tier['name']}: {tier['bf16_conv']}"
    return weight_layout.for_tier(tier["name"], chosen, dtype, weight_shape[1]), why


def _choose_algorithm(weight_shape, groups, stride, dilation, tier, algorithm, bf16: bool) -> tuple[str, str]:
    c_out, c_in, kh, kw = weight_shape
    product, name = c_out * c_in, tier["name"]
    if os.environ.get(ENV_WINOGRAD, "1") == "0":
        return DIRECT, f"direct: {ENV_WINOGRAD}=0"
    if algorithm == DIRECT:
        return DIRECT, "direct: conv_algorithm='direct'"
    fits = _ext.extension().winograd_fits(name, c_out, c_in, kh, kw, list(stride), list(dilation), groups)
    if not fits:
        shape = f"{kh}x{kw}/{stride[0]}" + (f" groups={groups}" if groups > 1 else "")
        return DIRECT, (
            f"direct: a {shape} conv, {c_out}x{c_in} channels; Winograd takes 3x3/1 undilated ungrouped convs "
            f"with C_in % {tier['lanes']} = C_out % {tier['block']} = 0"
        )
    size = f"{c_out}x{c_in} channels"
    # A tier may have measured other limits in bf16 (TierFacts, csrc/cpu/kernels.h).
    prefix, whose = ("bf16_", f"{name}'s bf16") if bf16 else ("", f"{name}'s")
    limit4, limit2 = tier[f"{prefix}winograd4x4_max_channels"], tier[f"{prefix}winograd2x2_max_channels"]
    if product <= limit4 and algorithm == AUTO:
        return "winograd4x4", f"F(4x4): {size}, within {whose} F(4x4) limit {_channels(limit4)}"
    if product <= limit2:
        why = f"within {whose} F(2x2) limit {_channels(limit2)}"
        if product <= limit4:
            why = "conv_algorithm='winograd2x2' (no F(4x4))"
        return WINOGRAD_2X2, f"F(2x2): {size}, {why}"
    return DIRECT, f"direct: {size}, above {whose} Winograd limit {_channels(limit2)}"
