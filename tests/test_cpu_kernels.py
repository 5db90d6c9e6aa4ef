"""The C++ AVX2/FMA CPU kernels of the cpp backend (csrc/cpu): parity with float64 for every
conv shape class and the kernel's own edge cases, the blocked weight layout, the layout
contract, errors, threads, and the backend's choice on CPU."""

import pytest
import torch
import torch.nn.functional as F

import fastresnet
from conv_cases import CONV_CASES, conv_args, conv_reference64
from fastresnet import _ext
from fastresnet.backends import BACKENDS
from fastresnet.testing import OP_TOLERANCES

OPS = BACKENDS["cpp"].ops()
TOL = OP_TOLERANCES[torch.float32]

# (C_in, C_out, kernel, stride, padding, dilation, groups, H, W) that reach the kernel's own
# edge cases, beyond the ResNet shape classes of CONV_CASES.
KERNEL_CASES = [
    (13, 20, 3, 1, 1, 1, 1, 7, 5),  # channels not a multiple of 8; a partial 16-channel block
    (16, 5, 1, 1, 0, 1, 1, 3, 3),  # fewer than 8 output channels: one masked vector
    (300, 24, 1, 1, 0, 1, 1, 4, 5),  # C_in > 256: the reduction is cut into L1-sized chunks
    (40, 48, 3, 1, 1, 1, 1, 5, 7),  # 3 kernel rows x 120 channels: chunks end inside a row
    (3, 16, 11, 1, 5, 1, 1, 9, 8),  # 121 taps at the borders: more segments than one batch
    (32, 32, 3, 2, 1, 1, 8, 9, 9),  # grouped, 4 channels per group (ResNeXt's widths)
    (64, 64, 3, 1, 1, 1, 2, 6, 6),  # grouped, 32 output channels per group: two blocks each
    (8, 8, 1, 1, 1, 1, 1, 3, 3),  # 1x1 with padding: border pixels see only zeros
    (6, 10, 5, 3, 2, 2, 1, 13, 11),  # stride 3, dilation 2
]


def blocked(weight, groups):
    return _ext.extension().block_conv_weight(weight, groups)


@pytest.mark.parametrize("case", CONV_CASES + KERNEL_CASES)
@pytest.mark.parametrize("residual,relu", [(True, True), (False, True), (False, False), (True, False)])
def test_conv_matches_float64(case, residual, relu):
    x, weight, bias, res, stride, padding, dilation, groups, relu = conv_args(case, residual=residual, relu=relu,
                                                                              channels_last=True)  # fmt: skip
    expected = conv_reference64(x, weight, bias, res, stride, padding, dilation, groups, relu)
    for w in (blocked(weight, groups), weight):  # blocked by optimize(), or per call
        out = OPS.conv2d_bias_act(x, w, bias, res, stride, padding, dilation, groups, relu)
        assert out.is_contiguous(memory_format=torch.channels_last) or out.shape[2:] == (1, 1)
        torch.testing.assert_close(out.double(), expected, atol=TOL.atol, rtol=TOL.rtol)


def test_realistic_sizes_match_float64():
    """A few ResNet-50 layers at full width: many tiles, both threads, the L2 range split."""
    for c_in, c_out, k, s, h in [(256, 512, 3, 1, 8), (1024, 256, 1, 1, 7), (64, 256, 1, 2, 15)]:
        x = torch.randn(2, c_in, h, h).contiguous(memory_format=torch.channels_last)
        weight = torch.randn(c_out, c_in, k, k) / (c_in * k * k) ** 0.5
        bias, p = torch.randn(c_out), k // 2
        out = OPS.conv2d_bias_act(x, blocked(weight, 1), bias, None, [s, s], [p, p], [1, 1], 1, True)
        expected = conv_reference64(x, weight, bias, None, [s, s], [p, p], [1, 1], 1, True)
        torch.testing.assert_close(out.double(), expected, atol=TOL.atol, rtol=TOL.rtol)


def test_block_conv_weight_layout():
    weight = torch.randn(2 * 20, 3, 2, 5)
    packed = blocked(weight, 2)
    assert packed.shape == (2, 2, 2, 5, 3, 16) and packed.is_contiguous()
    for g, nb, kh, kw, ci, j in [(0, 0, 0, 0, 0, 0), (1, 1, 1, 4, 2, 3), (1, 0, 0, 3, 1, 15), (0, 1, 1, 2, 0, 2)]:
        assert packed[g, nb, kh, kw, ci, j] == weight[g * 20 + nb * 16 + j, ci, kh, kw]
    assert packed[:, 1, ..., 4:].abs().sum() == 0  # channels 20..31 of each group: zero padding


def test_layout_contract_and_nchw_inputs():
    args = conv_args(CONV_CASES[1])  # contiguous NCHW: converted in and out, per call
    out = OPS.conv2d_bias_act(*args)
    assert out.is_contiguous() and not out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out.double(), conv_reference64(*args), atol=TOL.atol, rtol=TOL.rtol)
    x = torch.randn(2, 13, 9, 7)
    for inp in (x, x.contiguous(memory_format=torch.channels_last)):
        pooled = OPS.max_pool2d(inp, [3, 3], [2, 2], [1, 1], [1, 1], True)
        assert pooled.is_contiguous(memory_format=torch.channels_last) == (inp is not x)
        assert torch.equal(pooled, F.max_pool2d(x, 3, 2, 1, 1, True))


@pytest.mark.parametrize("case", [CONV_CASES[0], CONV_CASES[5], KERNEL_CASES[0]])
@pytest.mark.parametrize("channels_last", [False, True])
def test_conv_opcheck(case, channels_last):
    """The shared fake accepts the blocked weight and agrees with the kernel."""
    x, weight, bias, res, *rest = conv_args(case, channels_last=channels_last)
    torch.library.opcheck(OPS.conv2d_bias_act, (x, blocked(weight, rest[3]), bias, res, *rest))
    torch.library.opcheck(OPS.conv2d_bias_act, (x, weight, bias, None, *rest))


@pytest.mark.parametrize("shape", [(2, 16, 9, 9), (1, 13, 5, 6), (2, 3, 1, 1)])
def test_pools_and_add_relu_match_torch(shape):
    x = torch.randn(shape).contiguous(memory_format=torch.channels_last)
    for ceil_mode in (False, True):
        args = (x, [3, 3], [2, 2], [1, 1], [1, 1], ceil_mode)
        assert torch.equal(OPS.max_pool2d(*args), F.max_pool2d(x, 3, 2, 1, 1, ceil_mode))
        torch.library.opcheck(OPS.max_pool2d, args)
    dilated = OPS.max_pool2d(x, [2, 3], [1, 2], [1, 1], [2, 1], False)
    assert torch.equal(dilated, F.max_pool2d(x, (2, 3), (1, 2), 1, (2, 1)))
    mean = OPS.global_avg_pool(x)
    assert mean.shape == shape[:2]
    torch.testing.assert_close(mean.double(), x.double().mean((2, 3)), atol=TOL.atol, rtol=TOL.rtol)
    torch.library.opcheck(OPS.global_avg_pool, (x,))
    y = torch.randn(shape)
    added = OPS.add_relu(x, y)
    assert added.is_contiguous(memory_format=torch.channels_last) or shape[2:] == (1, 1)
    assert torch.equal(added, (x + y).relu())
    torch.library.opcheck(OPS.add_relu, (x, y))


def test_nan_and_inf_propagate():
    x, weight, bias, res, *rest = conv_args(CONV_CASES[1], residual=True, relu=True, channels_last=True)
    x[0, 0, 4, 4] = float("nan")
    res[1, 0, 0, 0] = float("inf")
    out = OPS.conv2d_bias_act(x, blocked(weight, 1), bias, res, *rest)
    expected = conv_reference64(x, weight, bias, res, *rest)
    assert out.isnan().any() and out.isinf().any()
    assert torch.equal(out.isnan(), expected.isnan()) and torch.equal(out.isinf(), expected.isinf())
    y = torch.randn(1, 9, 4, 4)
    y[0, 3, 1, 1] = y[0, 8, 2, 2] = float("nan")  # in the vector part and in the scalar tail
    assert torch.equal(OPS.max_pool2d(y, [2, 2], [2, 2], [0, 0], [1, 1], False).isnan(),
                       F.max_pool2d(y, 2, 2).isnan())  # fmt: skip
    assert torch.equal(OPS.add_relu(y, torch.zeros_like(y)).isnan(), y.isnan())


def test_threads_split_the_work_without_changing_the_answer():
    """Every output is computed by one thread in one order: the result is bitwise the same."""
    x = torch.randn(1, 64, 14, 14).contiguous(memory_format=torch.channels_last)
    weight, bias = blocked(torch.randn(128, 64, 3, 3) * 0.05, 1), torch.randn(128)
    before = torch.get_num_threads()
    outputs = []
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            outputs.append(OPS.conv2d_bias_act(x, weight, bias, None, [1, 1], [1, 1], [1, 1], 1, True))
    finally:
        torch.set_num_threads(before)
    assert torch.equal(outputs[0], outputs[1]) and torch.equal(outputs[0], outputs[2])


@pytest.mark.parametrize(
    "args,message",
    [
        (lambda x, w, b: (x.half(), w, b), "take float32, got a input of dtype Half"),
        (lambda x, w, b: (x, w[:, :, :, :, :, :8].contiguous(), b), r"blocked as \(groups, 1, KH, KW, C_in/groups, 16\)"),
        (lambda x, w, b: (x, w, torch.randn(20)), r"blocked as \(groups, 2, KH"),  # C_out is the bias's length
        (lambda x, w, b: (x[:, :4], w, b), "expected 8 input channels"),
        (lambda x, w, b: (x, w.transpose(4, 5), b), "and contiguous"),
    ],
)
def test_kernel_rejects_bad_arguments(args, message):
    x, weight, bias, _, *rest = conv_args(CONV_CASES[1], channels_last=True)
    with pytest.raises(RuntimeError, match=message):
        OPS.conv2d_bias_act(*args(x, blocked(weight, 1), bias), None, *rest)


def test_fake_rejects_a_wrongly_blocked_weight():
    x, weight, bias, _, *rest, relu = conv_args(CONV_CASES[1])
    with pytest.raises(ValueError, match=r"expected a blocked weight of shape \(1, 1, KH, KW, C_in/groups, 16\)"):
        fastresnet.ops.checks.check_conv2d_args("op", x, blocked(weight, 1)[:, :, :, :, :, :8], bias, None, *rest)
    with pytest.raises(ValueError, match="expected a 4-D weight .* or one laid out for the C\\+\\+ CPU kernels"):
        fastresnet.ops.checks.check_conv2d_args("op", x, weight[0], bias, None, *rest)


def test_auto_picks_the_cpu_kernels_in_float32_only(tiny_resnet):
    info = fastresnet.explain(fastresnet.optimize(tiny_resnet)).info
    assert info.backend == "cpp"
    info = fastresnet.explain(fastresnet.optimize(tiny_resnet, dtype=torch.bfloat16)).info
    assert info.backend == "reference"
    assert "auto skipped cpp: the CPU kernels are float32 only, not torch.bfloat16" in info.notes


def test_a_cpu_without_avx2_falls_back_with_the_reason(tiny_resnet, monkeypatch):
    reason = "this CPU lacks AVX2/FMA, which the C++ CPU kernels need"
    monkeypatch.setattr(_ext.extension(), "cpu_unsupported_reason", lambda: reason)
    statuses = {s.name: s for s in fastresnet.available_backends("cpu")}
    assert statuses["cpp"].reasons == (reason,)
    info = fastresnet.explain(fastresnet.optimize(tiny_resnet)).info
    assert info.backend == "reference" and f"auto skipped cpp: {reason}" in info.notes


def test_the_real_cpu_check_agrees_with_this_machine():
    with open("/proc/cpuinfo") as f:
        flags = next(line for line in f if line.startswith("flags")).split()
    has_avx2 = "avx2" in flags and "fma" in flags
    assert (_ext.extension().cpu_unsupported_reason() == "") == has_avx2


# -- Winograd F(2x2, 3x3) ------------------------------------------------------------------

WINOGRAD_CASES = [  # (N, C_in, C_out, H, W, padding)
    (1, 64, 64, 4, 4, 1),  # few tiles: the threads split the output channels instead
    (2, 8, 16, 9, 7, 1),  # odd H and W: the last tiles are partly outside the output
    (1, 24, 32, 6, 5, 0),  # no padding
    (1, 16, 16, 3, 3, 2),  # padding 2: whole tiles of zeros at the border
    (3, 64, 48, 5, 4, 1),  # a batch of small maps: tiles of several images in one chunk
    (1, 128, 64, 14, 14, 1),  # many tiles: several chunks on both threads
]


@pytest.mark.parametrize("case", WINOGRAD_CASES)
@pytest.mark.parametrize("residual,relu", [(True, True), (False, False)])
def test_winograd_matches_float64(case, residual, relu):
    n, c_in, c_out, h, w, p = case
    x = torch.randn(n, c_in, h, w).contiguous(memory_format=torch.channels_last)
    weight, bias = torch.randn(c_out, c_in, 3, 3) / (9 * c_in) ** 0.5, torch.randn(c_out)
    res = torch.randn(n, c_out, h + 2 * p - 2, w + 2 * p - 2) if residual else None
    args = ([1, 1], [p, p], [1, 1], 1, relu)
    out = OPS.conv2d_bias_act(x, _ext.extension().winograd_conv_weight(weight), bias, res, *args)
    expected = conv_reference64(x, weight, bias, res, *args)
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out.double(), expected, atol=TOL.atol, rtol=TOL.rtol)
    torch.library.opcheck(OPS.conv2d_bias_act, (x, _ext.extension().winograd_conv_weight(weight), bias, res, *args))


def test_winograd_weight_is_g_g_gt():
    weight = torch.randn(32, 5, 3, 3, dtype=torch.float64).float()
    u = _ext.extension().winograd_conv_weight(weight)
    assert u.shape == (4, 4, 2, 5, 16) and u.is_contiguous()
    g = torch.tensor([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], dtype=torch.float64)
    for co, ci in [(0, 0), (17, 4), (31, 2)]:
        expected = g @ weight[co, ci].double() @ g.T
        torch.testing.assert_close(u[:, :, co // 16, ci, co % 16].double(), expected, atol=1e-6, rtol=0)


def test_winograd_rejects_what_it_cannot_compute():
    x = torch.randn(1, 8, 6, 6).contiguous(memory_format=torch.channels_last)
    u, bias = _ext.extension().winograd_conv_weight(torch.randn(16, 8, 3, 3)), torch.randn(16)
    with pytest.raises(RuntimeError, match="stride 1, dilation 1, groups 1"):
        OPS.conv2d_bias_act(x, u, bias, None, [2, 2], [1, 1], [1, 1], 1, True)
    with pytest.raises(RuntimeError, match=r"expected 8 input channels \(a multiple of 8\)"):
        OPS.conv2d_bias_act(x[:, :4], u, bias, None, [1, 1], [1, 1], [1, 1], 1, True)
    with pytest.raises(ValueError, match=r"expected a Winograd weight of shape \(4, 4, 32/16, C_in, 16\)"):
        fastresnet.ops.checks.conv_weight_geometry("op", u, torch.randn(32), 1)
    with pytest.raises(RuntimeError, match="C_out a multiple of 16"):
        _ext.extension().winograd_conv_weight(torch.randn(12, 8, 3, 3))


def test_winograd_is_chosen_per_layer_and_can_be_switched_off(tiny_resnet, monkeypatch):
    """3x3 stride-1 convs up to 512x512 channels take Winograd; the rest stay direct."""
    fast = fastresnet.optimize(tiny_resnet)
    chosen = {m.algorithm for n, m in fast.named_modules() if n.startswith(("layer1", "layer3"))
              and getattr(m, "kernel_size", None) == (3, 3) and m.stride == (1, 1)}  # fmt: skip
    assert chosen == {"winograd"}
    assert fast.conv1.algorithm == "direct"  # the 7x7 stem
    assert fast.layer2[0].body[0].algorithm == "direct"  # 3x3 stride 2
    assert fast.layer4[0].last.algorithm == "winograd"  # 512x512
    wide = torch.empty(1024, 1024, 3, 3, device="meta")
    assert not fastresnet.backends.use_winograd(wide, 1, (1, 1), (1, 1))  # wider: not measured, direct
    assert not fastresnet.backends.use_winograd(torch.empty(32, 12, 3, 3), 1, (1, 1), (1, 1))  # C_in % 8
    rows = {row.module: row.op for row in fastresnet.explain(fast).info.fused}
    assert rows["layer1.0.last"] == "cpp_conv2d_bias_act (winograd)" and rows["conv1"] == "cpp_conv2d_bias_act"
    monkeypatch.setenv("FASTRESNET_WINOGRAD", "0")
    direct = fastresnet.optimize(tiny_resnet)
    assert {m.algorithm for m in direct.modules() if hasattr(m, "algorithm")} == {"direct"}
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), direct(x), atol=1e-4, rtol=1e-4)


def test_output_memory_is_reused_only_after_the_tensor_is_freed():
    ext = _ext.extension()
    x, weight, bias, _, *rest = conv_args(KERNEL_CASES[0], residual=False, channels_last=True)
    weight = blocked(weight, 1)
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
