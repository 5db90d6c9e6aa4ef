"""Which layout, and so which algorithm, the C++ CPU kernels use for each conv.

A rule over the layer's shape, derived from per-layer measurements (benchmarks/
test_cpu_conv.py), not a timing in optimize(): the spatial size is not known when the model
is optimized, and the rule keeps optimize() fast and its choice reproducible. Winograd
F(2x2, 3x3) takes 3x3 stride-1 convs without dilation or groups whose channels fill whole
vectors of the tier, up to WINOGRAD_MAX_CHANNEL_PRODUCT; F(4x4, 3x3), with 36 multiplies
per 16 outputs instead of 64, takes the narrower ones (WINOGRAD_4X4_MAX_CHANNEL_PRODUCT per
tier), where its larger tiles still find enough of them: in ResNets the channel count fixes
the map size (64 at 56x56 ... 512 at 7x7, where a 4x4 tile wastes 30% of its outputs and
batch 1 has only 4 tiles per image to share the 36 transformed weight slabs). Everything
else runs direct. FASTRESNET_WINOGRAD=0 makes every conv direct.
"""

from __future__ import annotations

import os

import torch

ENV_WINOGRAD = "FASTRESNET_WINOGRAD"

# Winograd F(2x2, 3x3) reads a transformed weight 16/9 the size of the direct one. Measured
# per layer on AVX2 (Zen 3, hot caches): 1.6-1.9x over direct up to 256x256 channels, 1.15x
# (batch 1) and 1.27x (batch 8) at 512x512 on a 7x7 map; whole models with 512x512 included
# vs excluded: ResNet-34 30.5 vs 31.0 ms (b1), 211 vs 219 ms (b8), ResNet-50 47.1 vs 46.6 ms
# (b1). Wider layers are not measured, so they stay direct.
WINOGRAD_MAX_CHANNEL_PRODUCT = 512 * 512

# F(4x4, 3x3) against F(2x2, 3x3) per layer, ms at batch 1 / 8 (benchmarks/test_cpu_conv.py on
# an AMD EPYC Zen 4, 2 threads, 2026-11-25; BENCHMARKS.md has the table): avx512: 64@56 0.42
# vs 0.66 / 3.4 vs 5.2; 128@28 0.45 vs 0.59 / 3.0 vs 4.5; 256@14 0.64 vs 0.71 / 3.5 vs 4.2;
# 512@7 1.25 vs 0.86 / 3.6 vs 5.5. avx2 (16 registers: the 6x6 transforms spill): 128@28 0.49
# vs 0.65; 256@14 0.71 vs 0.77 / 3.6 vs 4.4; 512@7 1.28 vs 1.00 / 4.2 vs 5.9. Where isolated
# layers are close or flip between runs, whole models decide (in one process, interleaved):
# on avx512, F(2x2) at 256x256 made ResNet-50 1.9% slower at batch 1, and F(4x4) at 512x512
# 1.2% slower at batch 1 (1.1% faster at batch 8); on avx2, F(4x4) at 256x256 measured within
# 2% either way (ResNet-50 batch 1 +1.7%, batch 8 -1.0%), so the narrower limit stays.
WINOGRAD_4X4_MAX_CHANNEL_PRODUCT = {"avx512": 256 * 256, "avx2": 128 * 128}


def winograd_fits(
    weight_shape: tuple, groups: int, stride: tuple[int, int], dilation: tuple[int, int], tier: dict
) -> bool:
    """Whether the tier's Winograd kernels take this conv at all: 3x3, stride 1, no dilation
    or groups, C_in in whole vectors and C_out in whole weight blocks of the tier."""
    c_out, c_in, kh, kw = weight_shape
    return (
        (kh, kw) == (3, 3)
        and tuple(stride) == (1, 1)
        and tuple(dilation) == (1, 1)
        and groups == 1
        and c_in % tier["lanes"] == 0
        and c_out % tier["block"] == 0
    )


def choose_layout(
    weight: torch.Tensor, groups: int, stride: tuple[int, int], dilation: tuple[int, int], tier: dict
) -> str:
    """The weight layout name (ops/weight_layout.py) for this conv on ``tier`` (a dict from
    _ext.cpu_tiers())."""
    channel_product = weight.shape[0] * weight.shape[1]
    if os.environ.get(ENV_WINOGRAD, "1") != "0" and winograd_fits(tuple(weight.shape), groups, stride, dilation, tier):
        if channel_product <= WINOGRAD_4X4_MAX_CHANNEL_PRODUCT.get(tier["name"], 0):
            return f"{tier['name']}:winograd4x4"
        if channel_product <= WINOGRAD_MAX_CHANNEL_PRODUCT:
            return f"{tier['name']}:winograd2x2"
    return f"{tier['name']}:blocked"
