"""The C++ CPU kernels in bfloat16, on every tier this CPU runs (the ``cpu_tier`` fixture):
avx512bf16 multiplies by VDPBF16PS; the tiers without bf16 dot products (avx512vnni, avx512,
avx2) run the float kernel on the input widened to fp32, with the weights widened in registers;
Winograd reads and writes bf16 around an fp32 transformed domain.
Every op against float64, and no worse than eager bf16 (the same op in torch, on the same bf16
values) by more than 2x; NaN and infinities; odd channel counts and spatial tails; the
bf16 weight layouts; bitwise identical answers across thread counts; the backend's choice."""

import copy
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import fastresnet
from conftest import answers_on_thread_counts
from conv_cases import CONV_CASES, conv_args, conv_reference64
from fastresnet import _ext
from fastresnet.backends import BACKENDS
from fastresnet.bench.models import build_model
from fastresnet.nn import FusedConv2d
from fastresnet.numerics import OP_TOLERANCES, compare_to_reference, op_mismatch

OPS = BACKENDS["cpp-cpu"].ops()
BF16 = torch.bfloat16

# Beyond the ResNet shape classes: the kernel's own edge cases in bf16.
BF16_CASES = [
    (13, 20, 3, 1, 1, 1, 1, 7, 5),  # odd C_in: the padded layout, one zero channel appended
    (3, 16, 11, 1, 5, 1, 1, 9, 8),  # odd C_in, 121 taps: more segments than one flush
    (2100, 24, 1, 1, 0, 1, 1, 3, 5),  # a reduction > 1024: partial sums in the fp32 scratch
    (30, 40, 3, 1, 1, 1, 5, 6, 7),  # grouped with 6 channels per group
    (15, 10, 3, 2, 1, 1, 5, 7, 7),  # grouped with odd (3) channels per group: padded per group
]


def bf16_layout(tier: str, in_channels_per_group: int) -> str:
    return _ext.extension().bf16_conv_layout(tier, in_channels_per_group)


def test_bf16_layouts_pair_input_channels_for_dot_products_and_output_channels_for_widening():
    for tier in _ext.cpu_tiers():
        if "bfloat16" not in tier["dtypes"].split():
            continue
        name = tier["name"]
        if tier["bf16_widens"]:
            assert bf16_layout(name, 3) == bf16_layout(name, 64) == f"{name}:blocked-bf16-widened"
        else:
            assert (bf16_layout(name, 3), bf16_layout(name, 64)) == (f"{name}:blocked-bf16-padded", f"{name}:blocked-bf16")
    # Output channels j and j + B/2 side by side: the block's two vectors from one load.
    tier = next(t for t in _ext.cpu_tiers() if t["bf16_widens"])
    block = tier["block"]
    weight = torch.arange(block * 3 * 2 * 2, dtype=torch.float32).reshape(block, 3, 2, 2).to(BF16)
    packed = _ext.extension().pack_conv_weight(weight, 1, f"{tier['name']}:blocked-bf16-widened")
    assert packed.shape == (1, 1, 2, 2, 3, block // 2, 2)
    assert torch.equal(packed[0, 0, 1, 0, 2, :, 0], weight[: block // 2, 2, 1, 0])
    assert torch.equal(packed[0, 0, 1, 0, 2, :, 1], weight[block // 2 :, 2, 1, 0])


def eager_bf16(x, weight, bias, res, stride, padding, dilation, groups, relu):
    out = F.conv2d(x, weight, bias, stride, padding, dilation, groups)
    out = out + res if res is not None else out
    return out.relu() if relu else out


@pytest.mark.parametrize("case", CONV_CASES + BF16_CASES)
@pytest.mark.parametrize("residual,relu", [(True, True), (False, False)])
def test_bf16_conv_matches_float64_within_eager_bf16s_error(case, residual, relu, cpu_tier):
    args = conv_args(case, dtype=BF16, residual=residual, relu=relu, channels_last=True)
    x, weight, bias, res, stride, padding, dilation, groups, relu = args
    expected = conv_reference64(*args)
    eager_error = (eager_bf16(*args).double() - expected).abs().max().item()
    layout = bf16_layout(cpu_tier["name"], weight.shape[1])
    packed = _ext.extension().pack_conv_weight(weight, groups, layout)
    assert torch.equal(_ext.extension().unpack_conv_weight(packed, layout, weight.shape[0], groups), weight)
    for w, name in ((packed, layout), (weight, "oihw")):  # by optimize(), or blocked per call
        out = OPS.conv2d_bias_act(x, w, bias, res, stride, padding, dilation, groups, relu, name)
        assert out.dtype == BF16 and out.shape == expected.shape
        assert op_mismatch(out, expected, OP_TOLERANCES[BF16]) is None
        # Eager bf16 rounds the conv, then the sum with the residual: two roundings to our one.
        assert (out.double() - expected).abs().max().item() <= 2 * eager_error + 1e-6


# 3x3/1 convs the Winograd kernels take on every tier (C_in % 16 = C_out % 32 = 0), with
# spatial tails that cut the last tiles short.
WINOGRAD_CASES = [(32, 64, 3, 1, 1, 1, 1, 9, 7), (64, 32, 3, 1, 0, 1, 1, 11, 14), (16, 32, 3, 1, 1, 1, 1, 1, 1)]


@pytest.mark.parametrize("tile", [2, 4])
@pytest.mark.parametrize("case", WINOGRAD_CASES)
@pytest.mark.parametrize("residual,relu", [(True, True), (False, False)])
def test_bf16_winograd_is_the_float32_winograd_rounded_once(case, tile, residual, relu, cpu_tier):
    # The transformed input, weight and products stay in fp32, so on the same bf16 values the
    # bf16 kernel computes exactly what the fp32 one does, and only its store rounds.
    args = conv_args(case, dtype=BF16, residual=residual, relu=relu, channels_last=True)
    x, weight, bias, res, stride, padding, dilation, groups, relu = args
    layout = f"{cpu_tier['name']}:winograd{tile}x{tile}"
    packed = _ext.extension().pack_conv_weight(weight, 1, layout)
    assert packed.dtype == torch.float32  # U of the bf16 weight, rounded once to fp32
    assert torch.equal(packed, _ext.extension().pack_conv_weight(weight.float(), 1, layout))
    out = OPS.conv2d_bias_act(x, packed, bias, res, stride, padding, dilation, groups, relu, layout)
    widened = [t.float() if t is not None else None for t in (x, bias, res)]
    fp32 = OPS.conv2d_bias_act(widened[0], packed, widened[1], widened[2], stride, padding, dilation, groups, relu,
                               layout)
    assert out.dtype == BF16 and out.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(out, fp32.to(BF16))
    expected = conv_reference64(*args)
    eager_error = (eager_bf16(*args).double() - expected).abs().max().item()
    assert op_mismatch(out, expected, OP_TOLERANCES[BF16]) is None
    assert (out.double() - expected).abs().max().item() <= 2 * eager_error + 1e-6


@pytest.mark.parametrize("case", CONV_CASES + BF16_CASES)
def test_widened_bf16_conv_is_the_float32_conv_rounded_once(case, cpu_tier):
    # Without bf16 dot products the kernel is the float one on widened (exact) values, in the
    # same order: only the store rounds. (VDPBF16PS sums each pair first: another rounding.)
    if not cpu_tier["bf16_widens"]:
        pytest.skip(f"{cpu_tier['name']} multiplies bf16 by {cpu_tier['bf16_conv']}, not widened")
    x, weight, bias, res, *rest = conv_args(case, dtype=BF16, residual=True, relu=True, channels_last=True)
    layout = bf16_layout(cpu_tier["name"], weight.shape[1])
    out = OPS.conv2d_bias_act(x, _ext.extension().pack_conv_weight(weight, rest[3], layout), bias, res, *rest, layout)
    layout32 = f"{cpu_tier['name']}:blocked"
    packed32 = _ext.extension().pack_conv_weight(weight.float(), rest[3], layout32)
    fp32 = OPS.conv2d_bias_act(x.float(), packed32, bias.float(), res.float(), *rest, layout32)
    assert out.dtype == BF16 and torch.equal(out, fp32.to(BF16))


def test_bf16_winograd_refuses_a_weight_cast_to_bf16(cpu_tier):
    x, weight, bias, res, *rest = conv_args(WINOGRAD_CASES[0], dtype=BF16, channels_last=True)
    layout = f"{cpu_tier['name']}:winograd2x2"
    packed = _ext.extension().pack_conv_weight(weight, 1, layout).to(BF16)
    with pytest.raises(RuntimeError, match=f"expected a contiguous Float CPU weight laid out as '{layout}'"):
        OPS.conv2d_bias_act(x, packed, bias, res, *rest, layout)


def test_bf16_conv_propagates_nan_and_infinity(cpu_tier):
    x, weight, bias, res, *rest = conv_args((8, 16, 3, 1, 1, 1, 1, 9, 9), dtype=BF16, channels_last=True)
    x[0, 2, 4, 4] = float("nan")
    x[1, 5, 0, 0] = float("inf")
    layout = bf16_layout(cpu_tier["name"], 8)
    out = OPS.conv2d_bias_act(x, _ext.extension().pack_conv_weight(weight, 1, layout), bias, res, *rest, layout)
    expected = conv_reference64(x, weight, bias, res, *rest)
    assert torch.equal(out.isnan(), expected.isnan()) and out.isnan().any()
    finite = expected.isfinite()
    assert torch.equal(out.isinf(), expected.isinf())
    assert op_mismatch(out[finite], expected[finite], OP_TOLERANCES[BF16]) is None


def test_bf16_pools_and_add_relu_match_torch(cpu_tier):
    x = torch.randn(2, 37, 9, 11).to(BF16).contiguous(memory_format=torch.channels_last)  # 37: a masked tail
    x[0, 3, 2, 2], x[1, 36, 8, 10] = float("nan"), float("-inf")
    r = torch.randn_like(x)
    pooled, expected = OPS.max_pool2d(x, [3, 3], [2, 2], [1, 1], [1, 1], False), F.max_pool2d(x.float(), 3, 2, 1)
    assert pooled.dtype == BF16 and torch.equal(pooled.float().nan_to_num(7.0), expected.nan_to_num(7.0))
    # add + ReLU: the fp32 sum rounded once, as torch's bf16 add does.
    summed = OPS.add_relu(x, r)
    assert torch.equal(summed.float().nan_to_num(7.0), (x.float() + r.float()).relu().to(BF16).float().nan_to_num(7.0))
    # The mean in fp32, rounded once: within half a bf16 unit of the float64 mean.
    mean = OPS.global_avg_pool(x)
    expected_mean = x.double().mean((2, 3))
    finite = expected_mean.isfinite()
    assert mean.dtype == BF16 and torch.equal(mean.isnan(), expected_mean.isnan())
    assert ((mean.double() - expected_mean)[finite].abs() <= expected_mean[finite].abs() * 2**-8 + 1e-30).all()


def test_bf16_stores_round_to_nearest_even(cpu_tier):
    # Sums exactly halfway between two bf16 values go to the even one (torch's rounding too).
    one = torch.ones(1, 16, 1, 1, dtype=BF16).contiguous(memory_format=torch.channels_last)
    half_ulp = torch.full_like(one, 2.0**-8)  # 1 + 2^-8 lies halfway between 1 and 1 + 2^-7
    three_half_ulp = torch.full_like(one, 3 * 2.0**-8)  # 1 + 3 * 2^-8: halfway, rounds up to 1 + 2^-6
    assert (OPS.add_relu(one, half_ulp) == 1.0).all()
    assert (OPS.add_relu(one, three_half_ulp) == 1 + 2.0**-6).all()


def test_bf16_answers_are_bitwise_identical_across_thread_counts(cpu_tier):
    args = conv_args((64, 96, 3, 1, 1, 1, 1, 14, 13), dtype=BF16, channels_last=True)
    x, weight, bias, res, *rest = args
    layout = bf16_layout(cpu_tier["name"], 64)
    packed = _ext.extension().pack_conv_weight(weight, 1, layout)
    answers = answers_on_thread_counts(lambda: OPS.conv2d_bias_act(x, packed, bias, res, *rest, layout))
    assert all(torch.equal(answers[0], a) for a in answers[1:])


def test_bf16_kernels_refuse_mixed_dtypes(cpu_tier):
    x, weight, bias, res, *rest = conv_args(CONV_CASES[1], dtype=BF16, channels_last=True)
    layout = bf16_layout(cpu_tier["name"], 8)
    packed = _ext.extension().pack_conv_weight(weight, 1, layout)
    with pytest.raises(RuntimeError, match="expected a BFloat16 CPU bias of shape"):
        OPS.conv2d_bias_act(x, packed, bias.float(), res, *rest, layout)
    with pytest.raises(RuntimeError, match="expected a residual of the output's shape .* and dtype BFloat16"):
        OPS.conv2d_bias_act(x, packed, bias, res.float(), *rest, layout)
    with pytest.raises(RuntimeError, match=f"laid out as '{layout}' is for BFloat16 activations, got a Float input"):
        OPS.conv2d_bias_act(x.float(), packed, bias.float(), None, *rest, layout)
    with pytest.raises(RuntimeError, match="expected a residual of the input's shape .* and dtype BFloat16"):
        OPS.add_relu(x, x.float())


def test_a_bf16_model_on_the_cpu_kernels_holds_the_whole_model_rule(cpu_tier):
    model = build_model("resnet18")
    fast = fastresnet.optimize(model, dtype=BF16, backend="cpp-cpu")
    fast32 = fastresnet.optimize(model, backend="cpp-cpu")
    convs = [m for m in fast.modules() if isinstance(m, FusedConv2d)]
    assert {m.weight_layout.split(":")[0] for m in convs} == {cpu_tier["name"]}
    # The float32 rule with the tier's bf16 limits picks the algorithm; bf16 direct convs get
    # the pair layouts, Winograd ones keep the float32 transformed weight.
    bf16_limit2 = cpu_tier["bf16_winograd2x2_max_channels"]
    for conv, conv32 in zip(convs, [m for m in fast32.modules() if isinstance(m, FusedConv2d)]):
        above = conv.in_channels * conv.out_channels > bf16_limit2
        assert conv.algorithm == ("direct" if above else conv32.algorithm) and conv.bias.dtype == BF16
        assert conv.weight.dtype == (BF16 if conv.algorithm == "direct" else torch.float32)
    f2x2 = {"winograd F(2x2,3x3)"} if bf16_limit2 > cpu_tier["bf16_winograd4x4_max_channels"] else set()
    assert {c.algorithm for c in convs} == {"direct", "winograd F(4x4,3x3)"} | f2x2
    suffix = f"; bf16 on {cpu_tier['name']}: {cpu_tier['bf16_conv']}"
    for row in fastresnet.explain(fast).info.fused:
        assert row.why == "" or row.why.startswith("F(") or row.why.endswith(suffix), row.why
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref64, eager = model.double()(x.double()), model.to(BF16)(x.to(BF16))
        out = fast(x)  # float32 in, float32 out
    assert out.dtype == torch.float32
    result = compare_to_reference(out, eager, ref64, BF16)
    assert result.ok, result


def test_a_bf16_model_cast_again_keeps_each_weight_in_its_layouts_dtype(tiny_resnet):
    fast = fastresnet.optimize(tiny_resnet, dtype=BF16, backend="cpp-cpu")
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        before = fast(x)
        fast.to(BF16)
        twin = copy.deepcopy(fast)
        after, copied = fast(x), twin(x)
    dtypes = {m.weight_layout.split(":")[1]: m.weight.dtype for m in fast.modules() if isinstance(m, FusedConv2d)}
    assert "winograd4x4" in dtypes and any(layout.startswith("blocked-bf16") for layout in dtypes)
    assert all(dtype == (torch.float32 if layout.startswith("winograd") else BF16) for layout, dtype in dtypes.items())
    assert torch.equal(before, after) and torch.equal(before, copied)


@pytest.mark.skipif(
    not _ext.cpu_features().get("avx512f") or not _ext.cpu_features().get("avx512_bf16"),
    reason="needs a CPU with avx512_bf16, to fake one without it",
)
def test_without_avx512_bf16_bf16_runs_widened_on_the_avx512_tier(tiny_resnet, tmp_path):
    torch.save(tiny_resnet, tmp_path / "model.pt")
    code = f"""
import torch, fastresnet
model = torch.load({str(tmp_path / 'model.pt')!r}, weights_only=False)
fast = fastresnet.optimize(model, dtype=torch.bfloat16)
info = fastresnet.explain(fast).info
print("backend:", info.backend, "tier:", fastresnet._ext.cpu_isa())
print("why:", info.fused[0].why)
"""
    env = dict(os.environ, FASTRESNET_CPU_HIDE="avx512_bf16,avx512_vnni,amx_bf16", FASTRESNET_BACKEND="")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "backend: cpp-cpu tier: avx512" in result.stdout
    assert "; bf16 on avx512: fp32 FMAs on bf16 widened to fp32 (the input once per conv or per tile" in result.stdout
