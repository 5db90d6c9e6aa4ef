"""The C++ CPU int8 conv (csrc/cpu/int8_conv_kernel.h) on every tier this CPU runs: bit for
bit the reference's answer (ops/int8_reference.py), whose integer arithmetic test_int8.py
checks against an independent integer conv; the packed layout; errors; threads; whole models."""

import copy

import pytest
import torch
import torchvision

import fastresnet
from conftest import answers_on_thread_counts, calibrated
from fastresnet import _ext
from fastresnet.backends import BACKENDS
from fastresnet.nn.int8 import QuantizedConv2d
from fastresnet.ops import weight_layout
from test_int8 import INT8_CASES, calibration_batches, int8_args

REFERENCE = BACKENDS["reference"].int8_ops()
CPP = BACKENDS["cpp-cpu"].int8_ops()

# (C_in, C_out, kernel, stride, padding, dilation, groups, H, W): the kernel's own edge cases.
KERNEL_CASES = [
    (13, 20, 3, 1, 1, 1, 1, 7, 5),  # C_in padded to 16; a partial second vector of output channels
    (16, 5, 1, 1, 0, 1, 1, 3, 3),  # fewer than 8 output channels
    (64, 40, 1, 1, 0, 1, 1, 5, 4),  # 3 blocks, the last partial; 20 pixels: a partial tile of rows
    (1100, 24, 1, 1, 0, 1, 1, 4, 5),  # a long reduction
    (6, 10, 5, 3, 2, 2, 1, 13, 11),  # stride 3, dilation 2, C_in padded from 6 to 8
    (32, 32, 3, 2, 1, 1, 8, 9, 9),  # grouped, 4 channels per group
    (10, 12, 3, 1, 1, 1, 2, 6, 6),  # grouped, 5 channels per group: each group padded to 8
    (8, 8, 1, 1, 1, 1, 1, 3, 3),  # 1x1 with padding: the borders read only the zero point
    (3, 16, 7, 2, 3, 1, 1, 17, 15),  # the stem, read as row windows: 7 x 3 steps per kernel row, rounded to 24
    (2, 12, 5, 1, 0, 1, 1, 6, 9),  # row windows without padding: the copy still leaves bytes to read past the last
    (1, 20, 3, 3, 1, 1, 1, 8, 10),  # row windows of 1 channel, stride 3: windows 3 columns apart
    (3, 8, 5, 1, 4, 2, 1, 11, 11),  # dilation 2 spreads a kernel row: each tap padded to 4 instead
]


def packed(args, tier, layout=None):
    layout = layout or weight_layout.for_tier_int8(tier["name"])
    return dict(args, weight=weight_layout.pack(args["weight"], args["groups"], layout), weight_layout=layout)


def int8_layouts(tier) -> dict[str, int]:
    """The tier's int8 layouts and the largest |weight| each takes: "int8-blocked" (any), and
    "int8-7bit" (-64..64) where the tier has VPMADDUBSW kernels."""
    return {
        name: layout.int8_weight_bound
        for name, layout in weight_layout._packed_layouts().items()
        if layout.tier == tier["name"] and layout.int8_weight_bound
    }


def within(args, bound: int):
    """int8_args with the weight clamped to -bound..bound (its compensation to match)."""
    weight = args["weight"].clamp(-bound, bound)
    zero_point = args["input_zero_point"]
    return dict(args, weight=weight, compensation=(zero_point * weight.to(torch.int64).sum(dim=(1, 2, 3))).to(torch.int32))


def test_int8_layout_packs_as_its_tier_multiplies(cpu_tier):
    # VNNI tiers read int8 quads (each channel's 4 steps side by side); the others int16 pairs.
    layout = weight_layout.parse(weight_layout.for_tier_int8(cpu_tier["name"]))
    vnni = "VPDPBUSD" in cpu_tier["int8_conv"]
    assert layout.dtype == ("int8" if vnni else "int16")
    w = torch.randint(-128, 128, (40, 6, 3, 3), dtype=torch.int8)
    p = weight_layout.pack(w, 1, layout.name)
    b, o, c, kh, kw = 32 if vnni else 16, 35, 5, 2, 1  # channel 35: the second block; step 5: quad 1
    if vnni:
        assert p.shape == (1, 2, 3, 3, 2, 32, 4)
        assert p[0, o // b, kh, kw, c // 4, o % b, c % 4] == w[o, c, kh, kw]
    else:
        assert p.shape == (1, 3, 3, 3, 2, 2, 16, 2)
        assert p[0, o // b, kh, kw, c // 4, c % 2, o % b, (c % 4) // 2] == w[o, c, kh, kw]
    assert (p.flatten(0, 3)[..., 1, :, :].abs().sum() > 0) and p.flatten()[-1] == 0  # C_in 6 padded to 8 with zeros


def test_the_7bit_layout_exists_exactly_where_the_tier_multiplies_by_vpmaddubsw(cpu_tier):
    layouts = int8_layouts(cpu_tier)
    name = f"{cpu_tier['name']}:int8-7bit"
    assert (name in layouts) == (cpu_tier["int8_narrow_conv"] is not None) == ("VPDPBUSD" not in cpu_tier["int8_conv"])
    assert layouts[f"{cpu_tier['name']}:int8-blocked"] == 127
    if name not in layouts:
        return
    assert layouts[name] == 64 and "VPMADDUBSW" in cpu_tier["int8_narrow_conv"]
    w = torch.randint(-64, 65, (40, 6, 3, 3), dtype=torch.int8)
    p = weight_layout.pack(w, 1, name)  # int8 quads, as VNNI's, in blocks of 16 channels
    assert p.dtype == torch.int8 and p.shape == (1, 3, 3, 3, 2, 16, 4)
    assert p[0, 35 // 16, 2, 1, 5 // 4, 35 % 16, 5 % 4] == w[35, 5, 2, 1]
    for bad in (65, -65):
        wide = w.clone()
        wide[3, 2, 1, 0] = bad
        with pytest.raises(ValueError, match=f"'{name}' takes int8 weights in -64..64, got .*{bad}"):
            weight_layout.pack(wide, 1, name)
    # The layout follows the weight: 7-bit where it fits, the widened kernels' beyond.
    assert weight_layout.for_tier_int8(cpu_tier["name"], w) == name
    assert weight_layout.for_tier_int8(cpu_tier["name"], w.clamp(-65, 65) * 2) == f"{cpu_tier['name']}:int8-blocked"
    assert weight_layout.for_tier_int8(cpu_tier["name"], torch.full((1, 1, 1, 1), -128, dtype=torch.int8)).endswith("blocked")


@pytest.mark.parametrize("case", INT8_CASES + KERNEL_CASES)
@pytest.mark.parametrize("residual,relu", [(True, True), (False, False), (False, True), (True, False)])
def test_int8_conv_is_the_references_bit_for_bit(case, residual, relu, cpu_tier):
    a = int8_args(case, residual, relu)
    a["input_zero_point"] = 37  # a zero point in every case: the padding must read it
    a["compensation"] = (37 * a["weight"].to(torch.int64).sum(dim=(1, 2, 3))).to(torch.int32)
    for layout, bound in int8_layouts(cpu_tier).items():  # any weight, and -64..64 for the 7-bit kernels
        b = within(a, bound)
        expected = REFERENCE.int8_conv2d(**b)
        for args in (packed(b, cpu_tier, layout), b):  # packed once by quantize(), or per call
            out = CPP.int8_conv2d(**args)
            assert out.dtype == torch.uint8 and out.stride() == expected.stride()  # the input's memory format
            assert torch.equal(out, expected), layout


def test_int8_conv_saturates_and_rounds_ties_as_the_reference(cpu_tier):
    a = int8_args(INT8_CASES[1], residual=True, relu=False)
    big = dict(a, multiplier=torch.full_like(a["multiplier"], 0.05))  # most outputs at 0 or 255
    out = CPP.int8_conv2d(**big)
    assert torch.equal(out, REFERENCE.int8_conv2d(**big))
    assert (out == 0).float().mean() > 0.2 and (out == 255).float().mean() > 0.2
    # multiplier 0.5 with even bias: t lands on .5 exactly wherever the sum is odd
    ties = dict(a, multiplier=torch.full_like(a["multiplier"], 0.5), bias=torch.full_like(a["bias"], 2.0),
                residual=None, output_zero_point=100)  # fmt: skip
    ties["input"] = torch.randint(0, 3, a["input"].shape, dtype=torch.uint8)
    ties["weight"] = torch.randint(-1, 2, a["weight"].shape, dtype=torch.int8)
    ties["compensation"] = torch.zeros_like(a["compensation"])
    assert torch.equal(CPP.int8_conv2d(**ties), REFERENCE.int8_conv2d(**ties))


def test_int8_conv_answers_the_same_on_any_thread_count(cpu_tier):
    for layout, bound in int8_layouts(cpu_tier).items():
        a = packed(within(int8_args((64, 48, 3, 1, 1, 1, 1, 14, 14), residual=True, relu=True), bound), cpu_tier, layout)
        answers = answers_on_thread_counts(lambda: CPP.int8_conv2d(**a))
        assert torch.equal(answers[0], answers[1]) and torch.equal(answers[0], answers[2])


def test_the_7bit_kernels_products_sit_at_the_int16_edge_without_saturating(cpu_tier):
    # Every pair 255 x 64 + 255 x 64 = 32640 (or its negative): the largest VPMADDUBSW pair
    # the bound allows, next to int16's 32767; one saturation would change the sums.
    name = f"{cpu_tier['name']}:int8-7bit"
    if name not in int8_layouts(cpu_tier):
        pytest.skip(f"the {cpu_tier['name']} tier multiplies by VPDPBUSD, which has no int16 pairs")
    a = int8_args((64, 16, 1, 1, 0, 1, 1, 3, 3), residual=False, relu=False)
    a["input"] = torch.full_like(a["input"], 255)
    a["weight"] = torch.where(torch.arange(16).view(-1, 1, 1, 1) % 2 == 0, 64, -64).to(torch.int8).expand_as(a["weight"]).contiguous()
    a["multiplier"] = torch.full_like(a["multiplier"], 1 / 8192)  # 64 x 255 x 64 / 8192 = 127.5: inside 0..255
    a = within(a, 64)
    assert torch.equal(CPP.int8_conv2d(**packed(a, cpu_tier, name)), REFERENCE.int8_conv2d(**a))


def test_int8_conv_refuses_what_it_cannot_take(cpu_tier):
    a = int8_args(INT8_CASES[1], residual=False, relu=True)
    with pytest.raises(ValueError, match="expected a 4-D input .* of uint8 on CPU, got Float"):
        CPP.int8_conv2d(**{**a, "input": a["input"].float()})
    with pytest.raises(ValueError, match="expected an int8 weight"):
        CPP.int8_conv2d(**{**a, "weight": a["weight"].float()})
    with pytest.raises(ValueError, match=r"expected a multiplier of shape \(16,\), Float"):
        CPP.int8_conv2d(**{**a, "multiplier": a["multiplier"].double()})
    with pytest.raises(ValueError, match=r"expected a 1-D bias \(C_out,\), got shape \[\]"):
        CPP.int8_conv2d(**{**a, "bias": torch.tensor(1.0)})
    with pytest.raises(ValueError, match=r"input_zero_point in 0..255 \(a uint8 zero point\), got 300"):
        CPP.int8_conv2d(**{**a, "input_zero_point": 300})
    p = packed(a, cpu_tier)
    with pytest.raises(ValueError, match="the weight is for 5..8 input channels per group"):
        CPP.int8_conv2d(**{**p, "input": torch.zeros(1, 12, 9, 8, dtype=torch.uint8)})
    huge = dict(a, input=torch.zeros(1, 8000, 3, 3, dtype=torch.uint8),
                weight=torch.zeros(16, 8000, 3, 3, dtype=torch.int8))  # fmt: skip
    with pytest.raises(ValueError, match="products per output .* fit int32 exactly, got 72000"):
        CPP.int8_conv2d(**huge)
    with pytest.raises(ValueError, match="expected an int8 weight laid out as 'oihw' or '<tier>:int8-blocked'"):
        CPP.int8_conv2d(**{**a, "weight_layout": f"{cpu_tier['name']}:blocked"})


# -- quantize and the pools: plain C++, the reference's answers bit for bit ----------------


@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_cpp_quantize_is_the_references(channels_last, dtype):
    torch.manual_seed(0)
    x = (torch.randn(2, 5, 7, 9) * 40).to(dtype)
    x.view(-1)[:6] = torch.tensor([0.5, 1.5, -0.5, 2.5, 1e30, -1e30])  # ties to even; far past both ends
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    for scale, zero_point in [(0.5, 0), (0.37, 128), (1.0, 255)]:
        got, want = CPP.quantize(x, scale, zero_point), REFERENCE.quantize(x, scale, zero_point)
        assert torch.equal(got, want) and got.stride() == want.stride()


def test_cpp_quantize_refuses_what_the_reference_refuses():
    for bad in (float("nan"), float("inf"), float("-inf")):
        x = torch.zeros(1, 3, 70, 70)  # more than one thread's share: the flag is gathered across threads
        x[0, 2, 69, 69] = bad
        with pytest.raises(ValueError, match="NaN or infinite values, which have no uint8 value"):
            CPP.quantize(x, 1.0, 0)
    with pytest.raises(TypeError, match="expected a floating-point tensor to quantize, got Byte"):
        CPP.quantize(torch.zeros(1, 1, 1, 1, dtype=torch.uint8), 1.0, 0)
    with pytest.raises(ValueError, match="expected a finite scale > 0, got 0"):
        CPP.quantize(torch.zeros(1, 1, 1, 1), 0.0, 0)
    with pytest.raises(ValueError, match=r"zero_point in 0..255 \(a uint8 zero point\), got -1"):
        CPP.quantize(torch.zeros(1, 1, 1, 1), 1.0, -1)


# (kernel, stride, padding, dilation, ceil_mode): ResNet's stem pool, then the edges.
POOL_CASES = [(3, 2, 1, 1, False), (3, 2, 1, 1, True), (2, 2, 0, 1, True), (3, 1, 1, 2, False), (1, 3, 0, 1, False)]


@pytest.mark.parametrize("pool", POOL_CASES)
@pytest.mark.parametrize("channels_last", [True, False])
def test_cpp_int8_max_pool_is_the_references(pool, channels_last):
    x = torch.randint(0, 256, (2, 67, 11, 10), dtype=torch.uint8)  # 67 channels: not a vector multiple
    x[0, :, 0, 0] = 255  # a maximum in a window's corner, next to the padding
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    k, s, p, d, ceil = pool
    args = ([k, k], [s, s], [p, p], [d, d], ceil)
    got, want = CPP.int8_max_pool2d(x, *args), REFERENCE.int8_max_pool2d(x, *args)
    assert torch.equal(got, want) and got.stride() == want.stride()


def test_cpp_int8_max_pool_refuses_what_it_cannot_take():
    with pytest.raises(ValueError, match="expected a 4-D input .* of uint8 on CPU, got Float"):
        CPP.int8_max_pool2d(torch.zeros(1, 2, 5, 5), [3, 3], [2, 2], [1, 1], [1, 1], False)
    with pytest.raises(RuntimeError, match="0 <= padding <= kernel_size / 2"):
        CPP.int8_max_pool2d(torch.zeros(1, 2, 5, 5, dtype=torch.uint8), [3, 3], [2, 2], [2, 2], [1, 1], False)


@pytest.mark.parametrize("shape", [(2, 2048, 7, 7), (3, 5, 1, 1), (1, 70, 13, 6)])
def test_cpp_dequantize_global_avg_pool_is_the_references(shape):
    x = torch.randint(0, 256, shape, dtype=torch.uint8).contiguous(memory_format=torch.channels_last)
    for scale, zero_point in [(0.021, 0), (0.37, 131)]:
        assert torch.equal(CPP.dequantize_global_avg_pool(x, scale, zero_point),
                           REFERENCE.dequantize_global_avg_pool(x, scale, zero_point))  # fmt: skip
    with pytest.raises(ValueError, match="expected a non-empty H x W plane"):
        CPP.dequantize_global_avg_pool(torch.zeros(1, 2, 0, 3, dtype=torch.uint8), 1.0, 0)


def test_the_fake_takes_the_packed_layout_and_gives_the_kernels_shape(cpu_tier):
    a = packed(int8_args(KERNEL_CASES[0], residual=True, relu=True), cpu_tier)
    with torch._subclasses.fake_tensor.FakeTensorMode() as mode:
        fake = {k: mode.from_tensor(v) if isinstance(v, torch.Tensor) else v for k, v in a.items()}
        out = CPP.int8_conv2d(**fake)
    assert out.shape == CPP.int8_conv2d(**a).shape and out.dtype == torch.uint8


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_a_cpp_int8_model_is_the_reference_int8_model_bit_for_bit(name, cpu_tier):
    model = calibrated(getattr(torchvision.models, name)(num_classes=10), image_size=32)
    batches = calibration_batches()
    fast = fastresnet.quantize(model, batches, backend="cpp-cpu")
    bits = BACKENDS["cpp-cpu"].int8_weight_bits()  # 7 on tiers without VNNI
    reference = fastresnet.quantize(model, batches, backend="reference", weight_bits=bits)
    convs = [m for m in fast.modules() if isinstance(m, QuantizedConv2d)]
    suffix = "int8-7bit" if bits == 7 else "int8-blocked"
    assert {c.weight_layout for c in convs} == {f"{cpu_tier['name']}:{suffix}"}
    assert fastresnet.explain(fast).info.backend == "cpp-cpu"
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        assert torch.equal(fast(x), reference(x))


def test_the_packed_weight_follows_a_loaded_state_dict(tiny_resnet, cpu_tier):
    fast = fastresnet.quantize(tiny_resnet, calibration_batches(), backend="cpp-cpu")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = fast(x)
        state = copy.deepcopy(fast.state_dict())  # the qparams ride along as dicts
        for conv in (m for m in fast.modules() if isinstance(m, QuantizedConv2d)):
            conv.weight.zero_()
            conv._pack(conv.weight_layout)
        assert not torch.equal(fast(x), expected)
        fast.load_state_dict(state)
        assert torch.equal(fast(x), expected)


def test_quantize_takes_7_bit_weights_where_the_tier_runs_them_fastest(tiny_resnet, cpu_tier):
    batches = calibration_batches()
    narrow = cpu_tier["int8_narrow_conv"] is not None
    default = fastresnet.quantize(tiny_resnet, batches, backend="cpp-cpu")
    full = fastresnet.quantize(tiny_resnet, batches, backend="cpp-cpu", weight_bits=8)
    for model, levels, suffix in [(default, 64 if narrow else 127, "int8-7bit" if narrow else "int8-blocked"),
                                  (full, 127, "int8-blocked")]:  # fmt: skip
        convs = [m for m in model.modules() if isinstance(m, QuantizedConv2d)]
        # Symmetric per channel: every channel's largest weight lands on the top level.
        assert all(int(c.weight.to(torch.int16).abs().amax(dim=(1, 2, 3)).min()) == levels for c in convs)
        assert {c.weight_layout for c in convs} == {f"{cpu_tier['name']}:{suffix}"}
    notes = " ".join(fastresnet.explain(default).info.notes)
    assert ("in 7 bits: -64..64, the default of these kernels" in notes) == narrow
    assert "in 8 bits: -127..127" in " ".join(fastresnet.explain(full).info.notes)
    with pytest.raises(ValueError, match="weight_bits must be 7, 8 or None"):
        fastresnet.quantize(tiny_resnet, batches, weight_bits=4)


def test_a_loaded_state_dict_brings_its_weights_layout(tiny_resnet, cpu_tier):
    # 7-bit weights loaded into a model quantized with 8: packed for the 7-bit kernels where
    # the tier has them, and the answers those of the 7-bit model.
    batches = calibration_batches()
    seven = fastresnet.quantize(tiny_resnet, batches, backend="cpp-cpu", weight_bits=7)
    eight = fastresnet.quantize(tiny_resnet, batches, backend="cpp-cpu", weight_bits=8)
    eight.load_state_dict(seven.state_dict())
    convs = [m for m in eight.modules() if isinstance(m, QuantizedConv2d)]
    assert {c.weight_layout for c in convs} == {weight_layout.for_tier_int8(cpu_tier["name"], convs[0].weight)}
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(eight(x), seven(x))


def test_int8_is_what_the_tiers_say_they_take():
    assert all("int8" in t["dtypes"].split() for t in _ext.cpu_tiers())


def test_a_packed_int8_weight_of_the_other_packings_dtype_is_refused(cpu_tier):
    a = packed(int8_args(INT8_CASES[0], residual=False, relu=True), cpu_tier)
    other = torch.int16 if a["weight"].dtype == torch.int8 else torch.int8
    wrong = dict(a, weight=a["weight"].to(other))
    with pytest.raises(RuntimeError, match=f"weight laid out as '{a['weight_layout']}', got a contiguous"):
        CPP.int8_conv2d(**wrong)  # the kernel's own check
    meta = {k: v.to("meta") if isinstance(v, torch.Tensor) else v for k, v in wrong.items()}
    with pytest.raises(TypeError, match=f"laid out as '{a['weight_layout']}' to be {a['weight'].dtype}, got {other}"):
        torch.ops.fastresnet.cpp_int8_conv2d(**meta)  # the schema's check, for tracing (ops/meta.py)
