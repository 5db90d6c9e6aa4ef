"""The C++ CPU kernels of the cpp-cpu backend (csrc/cpu), on every instruction-set tier this CPU
runs (the ``cpu_tier`` fixture): parity with float64 for every conv shape class and the
kernel's own edge cases, the packed weight layouts, the layout contract, errors, threads,
and the backend's choice on CPU."""

import os
import re
import shutil
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
from fastresnet.cpu_conv_choice import choose_layout
from fastresnet.nn import FusedConv2d
from fastresnet.numerics import OP_TOLERANCES, Tolerance, op_mismatch

OPS = BACKENDS["cpp-cpu"].ops()
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
    assert torch.equal(fastresnet.ops.weight_layout.unpack(packed, f"{cpu_tier['name']}:blocked", 2 * per_group, 2), weight)


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
    outputs = answers_on_thread_counts(
        lambda: OPS.conv2d_bias_act(x, weight, bias, None, [1, 1], [1, 1], [1, 1], 1, True, layout)
    )
    assert torch.equal(outputs[0], outputs[1]) and torch.equal(outputs[0], outputs[2])


@pytest.mark.parametrize(
    "args,error,message",
    [
        (lambda x, w, b: (x.half(), w, b), RuntimeError, "take float32 or bfloat16, got a input of dtype Half"),
        (lambda x, w, b: (x, w[..., :8].contiguous(), b), ValueError,
         r"laid out as 'avx2:blocked', \(groups=1, ceil\(C_out/groups/16\), KH, KW, C_in/groups, 16\) for C_out=8 .*got \[1, 1, 3, 3, 8, 8\]"),
        (lambda x, w, b: (x, w, torch.randn(20)), ValueError, r"laid out as 'avx2:blocked'.* for C_out=20"),  # the bias's length
        (lambda x, w, b: (x[:, :4], w, b), RuntimeError, "expected 8 input channels"),
        (lambda x, w, b: (x, w.transpose(4, 5), b), RuntimeError, "got a non-contiguous Float weight"),
    ],
)  # fmt: skip
def test_kernel_rejects_bad_arguments(args, error, message):
    x, weight, bias, _, *rest = conv_args(CONV_CASES[1], channels_last=True)
    with pytest.raises(error, match=message):
        OPS.conv2d_bias_act(*args(x, pack(weight, 1, "avx2:blocked"), bias), None, *rest, "avx2:blocked")


def test_kernel_rejects_unknown_or_foreign_layouts():
    x, weight, bias, _, *rest = conv_args(CONV_CASES[1], channels_last=True)
    with pytest.raises(ValueError, match="unknown weight layout 'avx2:tiled'; this build has 'oihw', 'avx512bf16:blocked'"):
        OPS.conv2d_bias_act(x, weight, bias, None, *rest, "avx2:tiled")
    with pytest.raises(ValueError, match="unknown weight layout 'neon:blocked'"):
        OPS.conv2d_bias_act(x, weight, bias, None, *rest, "neon:blocked")
    with pytest.raises(ValueError, match="reads weights in the logical layout 'oihw' only"):
        BACKENDS["reference"].ops().conv2d_bias_act(x, weight, bias, None, *rest, "avx2:blocked")


def test_fake_rejects_a_wrongly_packed_weight():
    x, weight, bias, _, *rest, relu = conv_args(CONV_CASES[1])
    packed = pack(weight, 1, "avx2:blocked")
    with pytest.raises(ValueError, match=r"expected a weight laid out as 'avx2:blocked', \(groups=1, ceil.* C_out=20"):
        fastresnet.ops.checks.check_conv2d_args("op", x, packed, torch.randn(20), None, *rest, "avx2:blocked")
    with pytest.raises(ValueError, match=r"expected a 4-D weight \(C_out, C_in/groups, KH, KW\) for layout 'oihw'"):
        fastresnet.ops.checks.check_conv2d_args("op", x, packed, bias, None, *rest)
    with pytest.raises(ValueError, match="unknown weight layout 'blocked'"):
        fastresnet.ops.checks.check_conv2d_args("op", x, packed, bias, None, *rest, "blocked")


def test_auto_picks_the_cpu_kernels_in_float32_and_they_take_bfloat16_too(tiny_resnet):
    info = fastresnet.explain(fastresnet.optimize(tiny_resnet)).info
    assert info.backend == "cpp-cpu"
    assert any(note.startswith(f"CPU kernels: the {_ext.cpu_isa()} tier") for note in info.notes)
    info = fastresnet.explain(fastresnet.optimize(tiny_resnet, dtype=torch.bfloat16, backend="reference")).info
    assert info.backend == "reference"
    assert BACKENDS["cpp-cpu"].not_supported_reasons(torch.device("cpu"), torch.bfloat16) == []
    reasons = BACKENDS["cpp-cpu"].not_supported_reasons(torch.device("cpu"), torch.float16)
    assert reasons == ["the C++ CPU kernels take float32, bfloat16 or int8, not float16"]


# -- the tier dispatch, with a faked CPU ---------------------------------------------------
# The extension reads the CPU (and FASTRESNET_CPU_ISA) once, when it loads: a CPU that lacks
# some features is faked in a fresh interpreter, with FASTRESNET_CPU_HIDE, so that the
# extension's own checks see it, as they would on such a CPU.


def run_faked(tmp_path, code: str, **env: str) -> str:
    """Runs ``code`` in a fresh interpreter with ``env``; returns what it printed. Its
    ``models`` are the ones given to save_models() (the original tiny ResNet, and optimized ones)."""
    script = "import pickle, torch, fastresnet\nfrom fastresnet import _ext\nfrom fastresnet.nn import FusedConv2d\n"
    script += f"models = torch.load({str(tmp_path / 'models.pt')!r}, weights_only=False)\n" + code
    for name in ("FASTRESNET_CPU_HIDE", "FASTRESNET_CPU_ISA", "FASTRESNET_BACKEND"):
        env.setdefault(name, "")
    result = subprocess.run([sys.executable, "-c", script], env=dict(os.environ, **env), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def save_models(tmp_path, **models) -> None:
    torch.save(models, tmp_path / "models.pt")


def tiers_of(model) -> set:
    return {m.cpu_tier for m in model.modules() if isinstance(m, FusedConv2d)}


def tier_flags_present(hidden: set[str]) -> str:
    """The tiers' features this CPU has (/proc/cpuinfo) less ``hidden``, in the order the
    extension's messages list them: each tier's, highest rank first, once."""
    with open("/proc/cpuinfo") as info:
        flags = set(next(line for line in info if line.startswith("flags")).split(":", 1)[1].split())
    wanted = dict.fromkeys(f for t in _ext.cpu_tiers() for f in t["features"].split())
    return " ".join(f for f in wanted if f in flags and f not in hidden)


NEEDS_AVX512 = pytest.mark.skipif(
    any(t["unsupported_reason"] for t in _ext.cpu_tiers()), reason="needs a CPU that runs every tier, to fake one that does not"
)


@NEEDS_AVX512
def test_a_cpu_without_avx512_runs_the_avx2_tier_and_refuses_avx512_weights(tiny_resnet, tmp_path):
    save_models(tmp_path, eager=tiny_resnet)
    out = run_faked(tmp_path, """
assert _ext.cpu_isa() == "avx2", _ext.cpu_isa()
fast = fastresnet.optimize(models["eager"])
print({m.cpu_tier for m in fast.modules() if isinstance(m, FusedConv2d)})
print(fastresnet.explain(fast).info.notes)
x = torch.randn(2, 3, 32, 32)
with torch.no_grad():
    torch.testing.assert_close(fast(x), models["eager"](x), atol=1e-4, rtol=1e-4)
# The kernels refuse a weight laid out for a tier this CPU cannot run: a clear error, never an illegal instruction.
w, b = torch.randn(32, 16, 3, 3), torch.randn(32)
packed = _ext.extension().pack_conv_weight(w, 1, "avx512:blocked")
ops = fastresnet.backends.BACKENDS["cpp-cpu"].ops()
try:
    ops.conv2d_bias_act(torch.randn(1, 16, 8, 8), packed, b, None, [1, 1], [1, 1], [1, 1], 1, True, "avx512:blocked")
except RuntimeError as error:
    print(str(error).splitlines()[0])
""", FASTRESNET_CPU_HIDE="avx512f")
    assert "{'avx2'}" in out
    assert "CPU kernels: the avx2 tier, the widest this CPU runs (FASTRESNET_CPU_ISA can cap it)" in out
    assert (
        "fastresnet::cpp_conv2d_bias_act: the weight is laid out as 'avx512:blocked' for the avx512 kernels, which "
        "cannot run here (the avx512 kernels need avx512f fma; this CPU lacks avx512f)"
    ) in out


@NEEDS_AVX512
def test_a_cpu_without_avx2_falls_back_to_reference_with_the_reason(tiny_resnet, tmp_path):
    save_models(tmp_path, eager=tiny_resnet)
    out = run_faked(tmp_path, """
(status,) = [s for s in fastresnet.available_backends("cpu") if s.name == "cpp-cpu"]
print("reasons:", status.reasons)
info = fastresnet.explain(fastresnet.optimize(models["eager"])).info
print("backend:", info.backend, info.notes)
""", FASTRESNET_CPU_HIDE="avx2,avx512f")
    reason = (
        "this CPU runs none of the C++ CPU kernel tiers: avx512bf16: the avx512bf16 kernels need avx512f avx512_bf16 "
        "avx512_vnni fma; this CPU lacks avx512f; avx512vnni: the avx512vnni kernels need avx512f avx512_vnni fma; "
        "this CPU lacks avx512f; avx512: the avx512 kernels need avx512f fma; this CPU lacks avx512f; avx2: the "
        "avx2 kernels need avx2 fma; this CPU lacks avx2"
    )
    assert f"reasons: ('{reason}',)" in out
    assert f"backend: reference" in out and f"auto skipped cpp-cpu: {reason}" in out


@NEEDS_AVX512
def test_fastresnet_cpu_isa_caps_the_tier_and_refuses_what_the_cpu_lacks(tiny_resnet, tmp_path):
    save_models(tmp_path, eager=tiny_resnet)
    capped = run_faked(tmp_path, """
fast = fastresnet.optimize(models["eager"])
print({m.cpu_tier for m in fast.modules() if isinstance(m, FusedConv2d)}, fastresnet.explain(fast).info.notes)
""", FASTRESNET_CPU_ISA="avx2")
    assert "{'avx2'}" in capped and "CPU kernels: the avx2 tier, chosen by FASTRESNET_CPU_ISA=avx2" in capped
    refusing = """
try:
    fastresnet.optimize(models["eager"])
except ValueError as error:
    print(error)
"""
    lacking = run_faked(tmp_path, refusing, FASTRESNET_CPU_ISA="avx512", FASTRESNET_CPU_HIDE="avx512f")
    assert (
        "FASTRESNET_CPU_ISA=avx512 asks for a tier this CPU cannot run: the avx512 kernels need avx512f fma; this "
        f"CPU lacks avx512f; this CPU runs avx2 (its flags: {tier_flags_present(hidden={'avx512f'})})"
    ) in lacking
    unknown = run_faked(tmp_path, refusing, FASTRESNET_CPU_ISA="sse2")
    assert "FASTRESNET_CPU_ISA=sse2 is not a CPU kernel tier of this build; it has avx512bf16, avx512vnni, avx512, avx2, and this CPU runs" in unknown


def test_set_cpu_isa_switches_the_extension_and_refuses_unknown_tiers(tiny_resnet):
    runnable = [t["name"] for t in _ext.cpu_tiers() if not t["unsupported_reason"]]
    try:
        for name in runnable:
            _ext.set_cpu_isa(name)
            assert _ext.cpu_isa() == name == _ext.build_info()["cpu_isa"]
            assert tiers_of(fastresnet.optimize(tiny_resnet)) == {name}
        with pytest.raises(ValueError, match="CPU tier 'sse2' is not a CPU kernel tier of this build"):
            _ext.set_cpu_isa("sse2")
    finally:
        _ext.set_cpu_isa(None)
    assert _ext.cpu_isa() == runnable[0]


def test_the_real_cpu_check_agrees_with_this_machine():
    with open("/proc/cpuinfo") as f:
        flags = set(next(line for line in f if line.startswith("flags")).split())
    tiers = {t["name"]: not t["unsupported_reason"] for t in _ext.cpu_tiers()}
    assert tiers["avx2"] == ({"avx2", "fma"} <= flags)
    assert tiers["avx512"] == ({"avx512f", "fma"} <= flags)  # and Linux saves the zmm state where the CPU has it
    features = _ext.cpu_features()
    for flag in ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_bf16", "avx512_vnni", "amx_bf16",
                 "amx_tile", "amx_int8"):  # fmt: skip
        assert features[flag] == (flag in flags), flag


def test_the_code_that_runs_at_load_uses_no_avx():
    # Every CPU runs the tier files' load-time code (each registers its tier), so it must stay
    # in the generic target: compiled inside the AVX-512 pragma, the registration copied its
    # facts with zmm moves and the extension died with SIGILL on load on AVX2-only CPUs
    # (tier_table.h). Read from the machine code, since an AVX-512 machine runs it either way.
    objdump = shutil.which("objdump")
    if objdump is None:
        pytest.skip("objdump (binutils) is not installed: the load-time code cannot be disassembled")
    listing = subprocess.run([objdump, "-d", "--no-show-raw-insn", "-C", _ext.extension().__file__],
                             capture_output=True, text=True, check=True).stdout  # fmt: skip
    load_time, checked, offending = False, set(), []
    for line in listing.splitlines():
        if line.endswith(">:"):  # a function starts: "<address> <name>:"
            name = line.split(" <", 1)[1][:-2]
            load_time = name.startswith("_GLOBAL__sub_I_") or "TierRegistration" in name or "make_tier" in name
            if load_time:
                checked.add(name)
        elif load_time and "\t" in line:
            instruction = line.split("\t", 1)[1]
            if instruction.startswith("v") or re.search(r"%[yz]mm|%k[0-7]", instruction):
                offending.append(f"{name}: {instruction}")
    assert any(name.startswith("_GLOBAL__sub_I_tier_") for name in checked), sorted(checked)
    assert not offending, offending[:5]


@NEEDS_AVX512
def test_a_model_saved_on_one_tier_is_relaid_out_where_it_cannot_run(tiny_resnet, tmp_path):
    fast = fastresnet.optimize(tiny_resnet)
    fast16 = fastresnet.optimize(tiny_resnet, dtype=torch.bfloat16, backend="cpp-cpu")
    assert tiers_of(fast) == tiers_of(fast16) == {_ext.cpu_isa()}
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected, expected16 = fast(x), fast16(x)
    save_models(tmp_path, fast=fast, fast16=fast16, x=x, expected=expected, expected16=expected16)
    out = run_faked(tmp_path, """
for name in ("fast", "fast16"):
    convs = [m for m in models[name].modules() if isinstance(m, FusedConv2d)]
    print(name, sorted({f"{m.weight_layout} {m.weight.dtype}" for m in convs}))
with torch.no_grad():
    torch.testing.assert_close(models["fast"](models["x"]), models["expected"], atol=1e-5, rtol=1e-5)
    # bf16: avx2 widens where avx512bf16 ran VDPBF16PS, a different rounding of the same sums
    torch.testing.assert_close(models["fast16"](models["x"]), models["expected16"], atol=2e-2, rtol=2e-2)
print("same answer")
""", FASTRESNET_CPU_HIDE="avx512f")
    f32, bf16 = "torch.float32", "torch.bfloat16"
    assert f"fast ['avx2:blocked {f32}', 'avx2:winograd2x2 {f32}', 'avx2:winograd4x4 {f32}']" in out
    assert (
        f"fast16 ['avx2:blocked-bf16-widened {bf16}', 'avx2:winograd2x2 {f32}', 'avx2:winograd4x4 {f32}']" in out
    )
    assert "same answer" in out


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


# G of F(m x m, 3x3) (U = G g G^T), from Lavin & Gray (2016): the test's own statement of it.
WINOGRAD_G = {
    2: [[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]],
    4: [[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6], [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6],
        [0, 0, 1]],
}  # fmt: skip


@pytest.mark.parametrize("m", [2, 4])
def test_winograd_weight_is_g_g_gt_and_unpacks(m, cpu_tier):
    block = cpu_tier["block"]
    weight = torch.randn(2 * block, 5, 3, 3, dtype=torch.float64).float()
    layout = f"{cpu_tier['name']}:winograd{m}x{m}"
    u = pack(weight, 1, layout)
    t = m + 2
    assert u.shape == (t, t, 2, 5, block) and u.is_contiguous()
    g = torch.tensor(WINOGRAD_G[m], dtype=torch.float64)
    for co, ci in [(0, 0), (block + 1, 4), (2 * block - 1, 2)]:
        expected = g @ weight[co, ci].double() @ g.T
        torch.testing.assert_close(u[:, :, co // block, ci, co % block].double(), expected, atol=1e-6, rtol=0)
    unpacked = fastresnet.ops.weight_layout.unpack(u, layout, 2 * block, 1)
    torch.testing.assert_close(unpacked, weight, atol=1e-6, rtol=0)


def test_winograd_rejects_what_it_cannot_compute():
    x = torch.randn(1, 8, 6, 6).contiguous(memory_format=torch.channels_last)
    u, bias = pack(torch.randn(16, 8, 3, 3), 1, "avx2:winograd2x2"), torch.randn(16)
    args = ([1, 1], [1, 1], [1, 1], 1, True, "avx2:winograd2x2")
    with pytest.raises(RuntimeError, match="stride 1, dilation 1, groups 1"):
        OPS.conv2d_bias_act(x, u, bias, None, [2, 2], *args[1:])
    with pytest.raises(RuntimeError, match=r"expected 8 input channels \(a multiple of 8\)"):
        OPS.conv2d_bias_act(x[:, :4], u, bias, None, *args)
    with pytest.raises(ValueError, match=r"laid out as 'avx2:winograd4x4', \(6, 6, C_out/16, C_in, 16\)"):
        OPS.conv2d_bias_act(x, u, bias, None, *args[:-1], "avx2:winograd4x4")
    with pytest.raises(ValueError, match=r"expected a weight laid out as 'avx2:winograd2x2', \(4, 4, C_out/16, C_in, 16\)"):
        fastresnet.ops.checks.conv_weight_geometry("op", u, torch.randn(48), 1, "avx2:winograd2x2")
    with pytest.raises(ValueError, match="C_out a multiple of 16"):
        pack(torch.randn(12, 8, 3, 3), 1, "avx2:winograd2x2")


def test_winograd_is_chosen_per_layer_and_can_be_switched_off(tiny_resnet, monkeypatch, cpu_tier):
    """3x3 stride-1 convs take Winograd F(4x4) up to the tier's channel limit, F(2x2) up to
    its F(2x2) limit; the rest stay direct. conv_algorithm and FASTRESNET_WINOGRAD=0 limit it."""
    f2, f4 = "winograd F(2x2,3x3)", "winograd F(4x4,3x3)"
    fast = fastresnet.optimize(tiny_resnet)
    limit_4x4 = cpu_tier["winograd4x4_max_channels"]
    assert 0 < limit_4x4 < 512 * 512 <= cpu_tier["winograd2x2_max_channels"]
    for name, module in fast.named_modules():
        if isinstance(module, FusedConv2d) and module.kernel_size == (3, 3) and module.stride == (1, 1):
            product = module.in_channels * module.out_channels
            assert module.algorithm == (f4 if product <= limit_4x4 else f2), name
    assert fast.layer1[0].last.algorithm == f4  # 64x64
    assert fast.conv1.algorithm == "direct"  # the 7x7 stem
    assert fast.layer2[0].body[0].algorithm == "direct"  # 3x3 stride 2
    assert fast.layer4[0].last.algorithm == f2  # 512x512
    name = cpu_tier["name"]
    wide = choose_layout((1024, 1024, 3, 3), 1, (1, 1), (1, 1), cpu_tier, "auto")  # wider: not measured
    assert wide == (f"{name}:blocked", f"direct: 1024x1024 channels, above {name}'s Winograd limit 512x512")
    odd = (cpu_tier["block"], cpu_tier["lanes"] + 4, 3, 3)  # C_in not in whole vectors
    assert choose_layout(odd, 1, (1, 1), (1, 1), cpu_tier, "auto")[0] == f"{name}:blocked"
    rows = {row.module: row for row in fastresnet.explain(fast).info.fused}
    assert rows["layer1.0.last"].op == f"cpp_conv2d_bias_act ({name}, {f4})"
    assert rows["layer1.0.last"].why == f"F(4x4): 64x64 channels, within {name}'s F(4x4) limit {_side(limit_4x4)}"
    assert rows["conv1"].op == f"cpp_conv2d_bias_act ({name}, direct)"
    assert rows["conv1"].why.startswith("direct: a 7x7/2 conv, 64x3 channels; Winograd takes 3x3/1")
    assert "why this algorithm" in str(fastresnet.explain(fast))
    # conv_algorithm: F(2x2) only, or every conv direct; FASTRESNET_WINOGRAD=0 overrides it.
    only_2x2 = fastresnet.optimize(tiny_resnet, conv_algorithm="winograd2x2")
    assert only_2x2.layer1[0].last.algorithm == f2
    assert fastresnet.explain(only_2x2).info.fused[2].why == "F(2x2): 64x64 channels, conv_algorithm='winograd2x2' (no F(4x4))"
    direct = fastresnet.optimize(tiny_resnet, conv_algorithm="direct")
    assert {m.algorithm for m in direct.modules() if isinstance(m, FusedConv2d)} == {"direct"}
    monkeypatch.setenv("FASTRESNET_WINOGRAD", "0")
    by_env = fastresnet.optimize(tiny_resnet)
    assert {m.algorithm for m in by_env.modules() if isinstance(m, FusedConv2d)} == {"direct"}
    assert {r.why for r in fastresnet.explain(by_env).info.fused if r.why} == {"direct: FASTRESNET_WINOGRAD=0"}
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), direct(x), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(only_2x2(x), direct(x), atol=1e-4, rtol=1e-4)


def _side(product: int) -> str:
    side = round(product**0.5)
    return f"{side}x{side}"


def test_conv_algorithm_is_checked_and_noted_where_it_does_nothing(tiny_resnet):
    with pytest.raises(ValueError, match="unknown conv_algorithm 'fft'; valid choices are 'auto', 'winograd2x2', 'direct'"):
        fastresnet.optimize(tiny_resnet, conv_algorithm="fft")
    reference = fastresnet.optimize(tiny_resnet, backend="reference", conv_algorithm="direct")
    assert "conv_algorithm='direct' has no effect on reference: it runs every conv direct" in fastresnet.explain(reference).info.notes


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
