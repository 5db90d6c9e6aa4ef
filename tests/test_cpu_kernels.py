"""The C++ CPU kernels of the cpp backend (csrc/cpu), on every instruction-set tier this CPU
runs (the ``cpu_tier`` fixture): parity with float64 for every conv shape class and the
kernel's own edge cases, the packed weight layouts, the layout contract, errors, threads,
and the backend's choice on CPU."""

import io

import pytest
import torch
import torch.nn.functional as F

import fastresnet
from conftest import reset_cpu_isa
from conv_cases import CONV_CASES, conv_args, conv_reference64
from fastresnet import _ext
from fastresnet.backends import BACKENDS
from fastresnet.cpu_conv_choice import WINOGRAD_4X4_MAX_CHANNEL_PRODUCT, choose_layout
from fastresnet.nn import FusedConv2d
from fastresnet.numerics import OP_TOLERANCES, Tolerance, op_mismatch

OPS = BACKENDS["cpp"].ops()
TOL = OP_TOLERANCES[torch.float32]
# F(4x4, 3x3)'s transforms (points 0, +-1, +-2) round more than direct or F(2x2): measured max
# error 6e-6 to 1.5e-5 of the output scale on 64-512 channel layers (direct: 8e-7 to 2.3e-6).
TOL_WINOGRAD_4X4 = Tolerance(atol=5e-5, rtol=5e-5)

# (C_in, C_out, kernel, stride, padding, dilation, groups, H, W) that reach the kernel's own
# edge cases, beyond the ResNet shape classes of CONV_CASES.
KERNEL_CASES = [
    (13, 20, 3, 1, 1, 1, 1, 7, 5),  # channels not a multiple of 8; a partial 16-channel block
    (16, 5, 1, 1, 0, 1, 1, 3, 3),  # fewer than 8 output channels: one masked vector
    (1100, 24, 1, 1, 0, 1, 1, 4, 5),  # C_in > 1024: the reduction is cut into chunks, partial sums stored
    (120, 48, 3, 1, 1, 1, 1, 5, 7),  # 3 kernel rows x 360 channels: a chunk ends inside a row
    (3, 16, 11, 1, 5, 1, 1, 9, 8),  # 121 taps at the borders: more segments than one batch
    (32, 32, 3, 2, 1, 1, 8, 9, 9),  # grouped, 4 channels per group (ResNeXt's widths)
    (64, 64, 3, 1, 1, 1, 2, 6, 6),  # grouped, 32 output channels per group: two blocks each
    (8, 8, 1, 1, 1, 1, 1, 3, 3),  # 1x1 with padding: border pixels see only zeros
    (6, 10, 5, 3, 2, 2, 1, 13, 11),  # stride 3, dilation 2
]


def pack(weight, groups, layout):
    return _ext.extension().pack_conv_weight(weight, groups, layout)


@pytest.mark.parametrize("case", CONV_CASES + KERNEL_CASES)
@pytest.mark.parametrize("residual,relu", [(True, True), (False, True), (False, False), (True, False)])
def test_conv_matches_float64(case, residual, relu, cpu_tier):
    x, weight, bias, res, stride, padding, dilation, groups, relu = conv_args(case, residual=residual, relu=relu,
                                                                              channels_last=True)  # fmt: skip
    expected = conv_reference64(x, weight, bias, res, stride, padding, dilation, groups, relu)
    blocked = f"{cpu_tier['name']}:blocked"
    for w, layout in ((pack(weight, groups, blocked), blocked), (weight, "oihw")):  # by optimize(), or per call
        out = OPS.conv2d_bias_act(x, w, bias, res, stride, padding, dilation, groups, relu, layout)
        assert out.is_contiguous(memory_format=torch.channels_last) or out.shape[2:] == (1, 1)
        assert op_mismatch(out, expected, TOL) is None


def test_realistic_sizes_match_float64(cpu_tier):
    """A few ResNet-50 layers at full width: many tiles, both threads, the L2 range split."""
    layout = f"{cpu_tier['name']}:blocked"
    for c_in, c_out, k, s, h in [(256, 512, 3, 1, 8), (1024, 256, 1, 1, 7), (64, 256, 1, 2, 15)]:
        x = torch.randn(2, c_in, h, h).contiguous(memory_format=torch.channels_last)
        weight = torch.randn(c_out, c_in, k, k) / (c_in * k * k) ** 0.5
        bias, p = torch.randn(c_out), k // 2
        out = OPS.conv2d_bias_act(x, pack(weight, 1, layout), bias, None, [s, s], [p, p], [1, 1], 1, True, layout)
        expected = conv_reference64(x, weight, bias, None, [s, s], [p, p], [1, 1], 1, True)
        assert op_mismatch(out, expected, TOL) is None


def test_blocked_weight_layout(cpu_tier):
    block = cpu_tier["block"]
    per_group = block + 4  # one whole block and a partial one per group
    weight = torch.randn(2 * per_group, 3, 2, 5)
    packed = pack(weight, 2, f"{cpu_tier['name']}:blocked")
    assert packed.shape == (2, 2, 2, 5, 3, block) and packed.is_contiguous()
    for g, nb, kh, kw, ci, j in [(0, 0, 0, 0, 0, 0), (1, 1, 1, 4, 2, 3), (1, 0, 0, 3, 1, block - 1), (0, 1, 1, 2, 0, 2)]:
        assert packed[g, nb, kh, kw, ci, j] == weight[g * per_group + nb * block + j, ci, kh, kw]
    assert packed[:, 1, ..., 4:].abs().sum() == 0  # past the group's channels: zero padding
    layout = fastresnet.ops.weight_layout.WeightLayout.parse(f"{cpu_tier['name']}:blocked")
    assert torch.equal(fastresnet.ops.weight_layout.unpack(packed, layout, 2 * per_group, 2), weight)


def test_layout_contract_and_nchw_inputs(cpu_tier):
    args = conv_args(CONV_CASES[1])  # contiguous NCHW: converted in and out, per call
    out = OPS.conv2d_bias_act(*args)
    assert out.is_contiguous() and not out.is_contiguous(memory_format=torch.channels_last)
    assert op_mismatch(out, conv_reference64(*args), TOL) is None
    x = torch.randn(2, 13, 9, 7)
    for inp in (x, x.contiguous(memory_format=torch.channels_last)):
        pooled = OPS.max_pool2d(inp, [3, 3], [2, 2], [1, 1], [1, 1], True)
        assert pooled.is_contiguous(memory_format=torch.channels_last) == (inp is not x)
        assert torch.equal(pooled, F.max_pool2d(x, 3, 2, 1, 1, True))


@pytest.mark.parametrize("case", [CONV_CASES[0], CONV_CASES[5], KERNEL_CASES[0]])
@pytest.mark.parametrize("channels_last", [False, True])
def test_conv_opcheck(case, channels_last, cpu_tier):
    """The shared fake accepts the blocked weight and agrees with the kernel."""
    x, weight, bias, res, *rest = conv_args(case, channels_last=channels_last)
    layout = f"{cpu_tier['name']}:blocked"
    torch.library.opcheck(OPS.conv2d_bias_act, (x, pack(weight, rest[3], layout), bias, res, *rest, layout))
    torch.library.opcheck(OPS.conv2d_bias_act, (x, weight, bias, None, *rest))


@pytest.mark.parametrize("shape", [(2, 16, 9, 9), (1, 13, 5, 6), (2, 3, 1, 1)])
def test_pools_and_add_relu_match_torch(shape, cpu_tier):
    x = torch.randn(shape).contiguous(memory_format=torch.channels_last)
    for ceil_mode in (False, True):
        args = (x, [3, 3], [2, 2], [1, 1], [1, 1], ceil_mode)
        assert torch.equal(OPS.max_pool2d(*args), F.max_pool2d(x, 3, 2, 1, 1, ceil_mode))
        torch.library.opcheck(OPS.max_pool2d, args)
    dilated = OPS.max_pool2d(x, [2, 3], [1, 2], [1, 1], [2, 1], False)
    assert torch.equal(dilated, F.max_pool2d(x, (2, 3), (1, 2), 1, (2, 1)))
    mean = OPS.global_avg_pool(x)
    assert mean.shape == shape[:2]
    assert op_mismatch(mean, x.double().mean((2, 3)), TOL) is None
    torch.library.opcheck(OPS.global_avg_pool, (x,))
    y = torch.randn(shape)
    added = OPS.add_relu(x, y)
    assert added.is_contiguous(memory_format=torch.channels_last) or shape[2:] == (1, 1)
    assert torch.equal(added, (x + y).relu())
    torch.library.opcheck(OPS.add_relu, (x, y))


def test_nan_and_inf_propagate(cpu_tier):
    x, weight, bias, res, *rest = conv_args(CONV_CASES[1], residual=True, relu=True, channels_last=True)
    x[0, 0, 4, 4] = float("nan")
    res[1, 0, 0, 0] = float("inf")
    layout = f"{cpu_tier['name']}:blocked"
    out = OPS.conv2d_bias_act(x, pack(weight, 1, layout), bias, res, *rest, layout)
    expected = conv_reference64(x, weight, bias, res, *rest)
    assert out.isnan().any() and out.isinf().any()
    assert torch.equal(out.isnan(), expected.isnan()) and torch.equal(out.isinf(), expected.isinf())
    y = torch.randn(1, 9, 4, 4)
    y[0, 3, 1, 1] = y[0, 8, 2, 2] = float("nan")  # in a whole vector (AVX2) and in the masked tail
    assert torch.equal(OPS.max_pool2d(y, [2, 2], [2, 2], [0, 0], [1, 1], False).isnan(),
                       F.max_pool2d(y, 2, 2).isnan())  # fmt: skip
    assert torch.equal(OPS.add_relu(y, torch.zeros_like(y)).isnan(), y.isnan())


@pytest.mark.parametrize("kind", ["blocked", "winograd2x2", "winograd4x4"])
def test_threads_split_the_work_without_changing_the_answer(kind, cpu_tier):
    """Every output is computed by one thread in one order: the result is bitwise the same."""
    x = torch.randn(1, 64, 14, 14).contiguous(memory_format=torch.channels_last)
    layout = f"{cpu_tier['name']}:{kind}"
    weight, bias = pack(torch.randn(128, 64, 3, 3) * 0.05, 1, layout), torch.randn(128)
    before = torch.get_num_threads()
    outputs = []
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            outputs.append(OPS.conv2d_bias_act(x, weight, bias, None, [1, 1], [1, 1], [1, 1], 1, True, layout))
    finally:
        torch.set_num_threads(before)
    assert torch.equal(outputs[0], outputs[1]) and torch.equal(outputs[0], outputs[2])


@pytest.mark.parametrize(
    "args,message",
    [
        (lambda x, w, b: (x.half(), w, b), "take float32, got a input of dtype Half"),
        (lambda x, w, b: (x, w[..., :8].contiguous(), b), r"laid out as 'avx2:blocked', \(groups, 1, KH, KW, C_in/groups, 16\)"),
        (lambda x, w, b: (x, w, torch.randn(20)), r"laid out as 'avx2:blocked', \(groups, 2, KH"),  # C_out: the bias's length
        (lambda x, w, b: (x[:, :4], w, b), "expected 8 input channels"),
        (lambda x, w, b: (x, w.transpose(4, 5), b), "and contiguous"),
    ],
)
def test_kernel_rejects_bad_arguments(args, message):
    x, weight, bias, _, *rest = conv_args(CONV_CASES[1], channels_last=True)
    with pytest.raises(RuntimeError, match=message):
        OPS.conv2d_bias_act(*args(x, pack(weight, 1, "avx2:blocked"), bias), None, *rest, "avx2:blocked")


def test_kernel_rejects_unknown_or_foreign_layouts():
    x, weight, bias, _, *rest = conv_args(CONV_CASES[1], channels_last=True)
    with pytest.raises(RuntimeError, match="unknown weight layout 'avx2:tiled'"):
        OPS.conv2d_bias_act(x, weight, bias, None, *rest, "avx2:tiled")
    with pytest.raises(RuntimeError, match="unknown weight layout 'neon:blocked'"):
        OPS.conv2d_bias_act(x, weight, bias, None, *rest, "neon:blocked")
    with pytest.raises(ValueError, match="reads weights in the logical layout 'oihw' only"):
        BACKENDS["reference"].ops().conv2d_bias_act(x, weight, bias, None, *rest, "avx2:blocked")


def test_fake_rejects_a_wrongly_packed_weight():
    x, weight, bias, _, *rest, relu = conv_args(CONV_CASES[1])
    packed = pack(weight, 1, "avx2:blocked")
    with pytest.raises(ValueError, match=r"expected a weight laid out as avx2:blocked, \(groups=1, ceil.* C_out=20"):
        fastresnet.ops.checks.check_conv2d_args("op", x, packed, torch.randn(20), None, *rest, "avx2:blocked")
    with pytest.raises(ValueError, match=r"expected a 4-D weight \(C_out, C_in/groups, KH, KW\) for layout 'oihw'"):
        fastresnet.ops.checks.check_conv2d_args("op", x, packed, bias, None, *rest)
    with pytest.raises(ValueError, match="unknown weight layout 'blocked'"):
        fastresnet.ops.checks.check_conv2d_args("op", x, packed, bias, None, *rest, "blocked")


def test_auto_picks_the_cpu_kernels_in_float32_only(tiny_resnet):
    info = fastresnet.explain(fastresnet.optimize(tiny_resnet)).info
    assert info.backend == "cpp"
    assert any(note.startswith(f"CPU kernels: the {_ext.cpu_isa()} tier") for note in info.notes)
    info = fastresnet.explain(fastresnet.optimize(tiny_resnet, dtype=torch.bfloat16)).info
    assert info.backend == "reference"
    assert "auto skipped cpp: the CPU kernels are float32 only, not torch.bfloat16" in info.notes


# -- the tier dispatch, with a faked CPU ---------------------------------------------------


def fake_cpu(monkeypatch, lacking: set[str]):
    """Pretend the CPU cannot run the tiers in ``lacking``; the extension re-picks its tier."""
    real = _ext.cpu_tiers()
    faked = [dict(t, unsupported_reason=f"this CPU lacks {t['name']} (faked)" if t["name"] in lacking else
                  t["unsupported_reason"]) for t in real]  # fmt: skip
    monkeypatch.setattr(_ext, "cpu_tiers", lambda: faked)
    _ext._choice.clear()


@pytest.fixture
def restore_cpu_isa():
    yield
    reset_cpu_isa()


def test_a_cpu_without_avx512_runs_the_avx2_tier(tiny_resnet, monkeypatch, restore_cpu_isa):
    fake_cpu(monkeypatch, {"avx512"})
    assert _ext.cpu_isa() == "avx2"
    fast = fastresnet.optimize(tiny_resnet)
    assert {m.cpu_tier for m in fast.modules() if isinstance(m, FusedConv2d)} == {"avx2"}
    assert "CPU kernels: the avx2 tier, the widest this CPU runs (FASTRESNET_CPU_ISA can cap it)" in (
        fastresnet.explain(fast).info.notes
    )
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), tiny_resnet(x), atol=1e-4, rtol=1e-4)


def test_a_cpu_without_avx2_falls_back_to_reference_with_the_reason(tiny_resnet, monkeypatch, restore_cpu_isa):
    fake_cpu(monkeypatch, {"avx512", "avx2"})
    statuses = {s.name: s for s in fastresnet.available_backends("cpu")}
    (reason,) = statuses["cpp"].reasons
    assert reason.startswith("this CPU runs none of the C++ CPU kernel tiers: avx512: this CPU lacks avx512 (faked)")
    info = fastresnet.explain(fastresnet.optimize(tiny_resnet)).info
    assert info.backend == "reference" and f"auto skipped cpp: {reason}" in info.notes


def test_fastresnet_cpu_isa_caps_the_tier_and_refuses_what_the_cpu_lacks(tiny_resnet, monkeypatch, restore_cpu_isa):
    monkeypatch.setenv("FASTRESNET_CPU_ISA", "avx2")
    _ext._choice.clear()
    fast = fastresnet.optimize(tiny_resnet)
    assert {m.cpu_tier for m in fast.modules() if isinstance(m, FusedConv2d)} == {"avx2"}
    assert "CPU kernels: the avx2 tier, chosen by FASTRESNET_CPU_ISA=avx2" in fastresnet.explain(fast).info.notes
    fake_cpu(monkeypatch, {"avx512"})
    monkeypatch.setenv("FASTRESNET_CPU_ISA", "avx512")
    with pytest.raises(ValueError, match=r"FASTRESNET_CPU_ISA=avx512 asks for a tier this CPU cannot run: this CPU "
                                         r"lacks avx512 \(faked\); this CPU runs avx2 \(its flags: avx2 fma"):  # fmt: skip
        fastresnet.optimize(tiny_resnet)
    monkeypatch.setenv("FASTRESNET_CPU_ISA", "sse2")
    _ext._choice.clear()
    with pytest.raises(ValueError, match="FASTRESNET_CPU_ISA=sse2 is not a CPU kernel tier of this build; it has avx512, avx2"):
        fastresnet.optimize(tiny_resnet)


def test_resolve_cpu_isa_is_a_pure_rule():
    tiers = [{"name": "avx512", "unsupported_reason": "no avx512f"}, {"name": "avx2", "unsupported_reason": ""}]
    assert _ext.resolve_cpu_isa(tiers, None, {}) == "avx2"
    assert _ext.resolve_cpu_isa(tiers, "avx2", {}) == "avx2"
    assert _ext.resolve_cpu_isa([dict(t, unsupported_reason="x") for t in tiers], None, {}) is None
    with pytest.raises(ValueError, match="this CPU runs avx2 \\(its flags: avx2 fma\\)"):
        _ext.resolve_cpu_isa(tiers, "avx512", {"avx2": True, "fma": True, "avx512f": False})


def test_the_real_cpu_check_agrees_with_this_machine():
    with open("/proc/cpuinfo") as f:
        flags = set(next(line for line in f if line.startswith("flags")).split())
    tiers = {t["name"]: not t["unsupported_reason"] for t in _ext.cpu_tiers()}
    assert tiers["avx2"] == ({"avx2", "fma"} <= flags)
    assert tiers["avx512"] == ({"avx512f", "fma"} <= flags)  # and Linux saves the zmm state where the CPU has it
    features = _ext.cpu_features()
    for flag in ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_bf16", "avx512_vnni"):
        assert features[flag] == (flag in flags), flag


def test_a_model_saved_on_one_tier_is_relaid_out_where_it_cannot_run(tiny_resnet, monkeypatch, restore_cpu_isa):
    runnable = [t["name"] for t in _ext.cpu_tiers() if not t["unsupported_reason"]]
    if len(runnable) < 2:
        pytest.skip(f"needs two CPU tiers that run here to save on one and load on the other; this CPU runs {runnable}")
    saved_on, loaded_on = runnable
    _ext.set_cpu_isa(saved_on)
    fast = fastresnet.optimize(tiny_resnet)
    layouts = {m.weight_layout for m in fast.modules() if isinstance(m, FusedConv2d)}
    assert layouts == {f"{saved_on}:{kind}" for kind in ("blocked", "winograd2x2", "winograd4x4")}
    buffer = io.BytesIO()
    torch.save(fast, buffer)
    fake_cpu(monkeypatch, {saved_on})
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    assert {m.weight_layout for m in loaded.modules() if isinstance(m, FusedConv2d)} == {
        f"{loaded_on}:{kind}" for kind in ("blocked", "winograd2x2", "winograd4x4")}  # fmt: skip
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), fast(x), atol=1e-5, rtol=1e-5)


# -- Winograd F(2x2, 3x3) and F(4x4, 3x3) --------------------------------------------------

WINOGRAD_CASES = [  # (N, C_in, C_out, H, W, padding)
    (1, 64, 64, 4, 4, 1),  # few tiles: the threads split the output channels instead
    (2, 16, 32, 9, 7, 1),  # odd H and W: the last tiles are partly outside the output
    (1, 32, 32, 6, 5, 0),  # no padding
    (1, 16, 32, 3, 3, 2),  # padding 2: whole tiles of zeros at the border
    (3, 64, 64, 5, 4, 1),  # a batch of small maps: tiles of several images in one chunk
    (1, 128, 64, 14, 14, 1),  # many tiles: several chunks on both threads
]


@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("case", WINOGRAD_CASES)
@pytest.mark.parametrize("residual,relu", [(True, True), (False, False)])
def test_winograd_matches_float64(case, residual, relu, m, cpu_tier):
    n, c_in, c_out, h, w, p = case
    x = torch.randn(n, c_in, h, w).contiguous(memory_format=torch.channels_last)
    weight, bias = torch.randn(c_out, c_in, 3, 3) / (9 * c_in) ** 0.5, torch.randn(c_out)
    res = torch.randn(n, c_out, h + 2 * p - 2, w + 2 * p - 2) if residual else None
    layout = f"{cpu_tier['name']}:winograd{m}x{m}"
    args = ([1, 1], [p, p], [1, 1], 1, relu)
    u = pack(weight, 1, layout)
    out = OPS.conv2d_bias_act(x, u, bias, res, *args, layout)
    expected = conv_reference64(x, weight, bias, res, *args)
    assert out.is_contiguous(memory_format=torch.channels_last)
    tol = TOL if m == 2 else TOL_WINOGRAD_4X4
    assert op_mismatch(out, expected, tol) is None
    torch.library.opcheck(OPS.conv2d_bias_act, (x, u, bias, res, *args, layout))


@pytest.mark.parametrize("m", [2, 4])
def test_winograd_weight_is_g_g_gt_and_unpacks(m, cpu_tier):
    block = cpu_tier["block"]
    weight = torch.randn(2 * block, 5, 3, 3, dtype=torch.float64).float()
    layout = f"{cpu_tier['name']}:winograd{m}x{m}"
    u = pack(weight, 1, layout)
    t = m + 2
    assert u.shape == (t, t, 2, 5, block) and u.is_contiguous()
    g = torch.tensor(fastresnet.ops.weight_layout._WINOGRAD_G[m], dtype=torch.float64)
    for co, ci in [(0, 0), (block + 1, 4), (2 * block - 1, 2)]:
        expected = g @ weight[co, ci].double() @ g.T
        torch.testing.assert_close(u[:, :, co // block, ci, co % block].double(), expected, atol=1e-6, rtol=0)
    parsed = fastresnet.ops.weight_layout.WeightLayout.parse(layout)
    unpacked = fastresnet.ops.weight_layout.unpack(u, parsed, 2 * block, 1)
    torch.testing.assert_close(unpacked, weight, atol=1e-6, rtol=0)


def test_winograd_rejects_what_it_cannot_compute():
    x = torch.randn(1, 8, 6, 6).contiguous(memory_format=torch.channels_last)
    u, bias = pack(torch.randn(16, 8, 3, 3), 1, "avx2:winograd2x2"), torch.randn(16)
    args = ([1, 1], [1, 1], [1, 1], 1, True, "avx2:winograd2x2")
    with pytest.raises(RuntimeError, match="stride 1, dilation 1, groups 1"):
        OPS.conv2d_bias_act(x, u, bias, None, [2, 2], *args[1:])
    with pytest.raises(RuntimeError, match=r"expected 8 input channels \(a multiple of 8\)"):
        OPS.conv2d_bias_act(x[:, :4], u, bias, None, *args)
    with pytest.raises(RuntimeError, match=r"laid out as 'avx2:winograd4x4', \(6, 6, 1, C_in, 16\)"):
        OPS.conv2d_bias_act(x, u, bias, None, *args[:-1], "avx2:winograd4x4")
    with pytest.raises(ValueError, match=r"expected a weight laid out as avx2:winograd2x2, \(4, 4, C_out/B, C_in, B\)"):
        fastresnet.ops.checks.conv_weight_geometry("op", u, torch.randn(48), 1, "avx2:winograd2x2")
    with pytest.raises(RuntimeError, match="C_out a multiple of 16"):
        pack(torch.randn(12, 8, 3, 3), 1, "avx2:winograd2x2")


def test_winograd_is_chosen_per_layer_and_can_be_switched_off(tiny_resnet, monkeypatch, cpu_tier):
    """3x3 stride-1 convs take Winograd F(4x4) up to the tier's channel limit, F(2x2) up to
    512x512 channels; the rest stay direct."""
    f2, f4 = "winograd F(2x2,3x3)", "winograd F(4x4,3x3)"
    fast = fastresnet.optimize(tiny_resnet)
    limit_4x4 = WINOGRAD_4X4_MAX_CHANNEL_PRODUCT[cpu_tier["name"]]
    for name, module in fast.named_modules():
        if isinstance(module, FusedConv2d) and module.kernel_size == (3, 3) and module.stride == (1, 1):
            product = module.in_channels * module.out_channels
            assert module.algorithm == (f4 if product <= limit_4x4 else f2), name
    assert fast.layer1[0].last.algorithm == f4  # 64x64
    assert fast.conv1.algorithm == "direct"  # the 7x7 stem
    assert fast.layer2[0].body[0].algorithm == "direct"  # 3x3 stride 2
    assert fast.layer4[0].last.algorithm == f2  # 512x512
    wide = torch.empty(1024, 1024, 3, 3, device="meta")
    assert choose_layout(wide, 1, (1, 1), (1, 1), cpu_tier).endswith(":blocked")  # wider: not measured
    odd = torch.empty(cpu_tier["block"], cpu_tier["lanes"] + 4, 3, 3)  # C_in not in whole vectors
    assert choose_layout(odd, 1, (1, 1), (1, 1), cpu_tier).endswith(":blocked")
    rows = {row.module: row.op for row in fastresnet.explain(fast).info.fused}
    name = cpu_tier["name"]
    assert rows["layer1.0.last"] == f"cpp_conv2d_bias_act ({name}, {f4})"
    assert rows["conv1"] == f"cpp_conv2d_bias_act ({name}, direct)"
    monkeypatch.setenv("FASTRESNET_WINOGRAD", "0")
    direct = fastresnet.optimize(tiny_resnet)
    assert {m.algorithm for m in direct.modules() if isinstance(m, FusedConv2d)} == {"direct"}
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), direct(x), atol=1e-4, rtol=1e-4)


def test_output_memory_is_reused_only_after_the_tensor_is_freed():
    ext = _ext.extension()
    x, weight, bias, _, *rest = conv_args(KERNEL_CASES[0], residual=False, channels_last=True)
    rest = [*rest, "avx2:blocked"]
    weight = pack(weight, 1, "avx2:blocked")
    first = OPS.conv2d_bias_act(x, weight, bias, None, *rest)
    kept = first.clone()
    second = OPS.conv2d_bias_act(x * 2, weight, bias, None, *rest)  # `first` is alive: new memory
    assert second.data_ptr() != first.data_ptr() and torch.equal(first, kept)
    address = second.data_ptr()
    del second
    assert ext.cpu_cached_output_bytes() > 0
    third = OPS.conv2d_bias_act(x, weight, bias, None, *rest)
    assert third.data_ptr() == address and torch.equal(third, kept)  # the freed block, rewritten
    del third
    released = ext.cpu_release_cached_outputs()
    assert released > 0 and ext.cpu_cached_output_bytes() == 0
