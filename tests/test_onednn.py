"""The onednn backend (fastresnet/ops/onednn.py): bfloat16 and int8 convs through oneDNN's fused
convs, chosen by `auto` in bfloat16 and int8 on CPUs with AMX. Its bf16 ops run on any CPU with
oneDNN (oneDNN picks its own kernels), so they are checked wherever torch's oneDNN runs bf16
convs at all (AVX-512 BW/VL/DQ or AVX-NE-CONVERT: not on an AVX2-only CPU such as AMD Zen 3), and
its int8 ones wherever they are right (VNNI). The whole-model tests fake AMX on CPUs without it,
and the choice is checked on a faked CPU without it."""

import os
import re
import subprocess
import sys

import pytest
import torch
import torchvision

import fastresnet
from conftest import answers_on_thread_counts, calibrated
from conv_cases import CONV_CASES, conv_args, conv_reference64
from fastresnet import _ext
from fastresnet.nn import FusedConv2d
from fastresnet.nn.int8 import QuantizedConv2d
from fastresnet.numerics import INT8_MODEL_ERROR, OP_TOLERANCES, op_mismatch
from fastresnet.ops import onednn
from test_int8 import INT8_CASES, calibration_batches, int8_args
from test_int8_cpu import KERNEL_CASES
from test_models import MODELS, run_parity

OPS = onednn.register()
HAS_AMX = bool(_ext.cpu_features().get("amx_bf16"))


def _runs_onednn_bf16() -> bool:
    features = _ext.cpu_features()
    with open("/proc/cpuinfo") as f:
        flags = next((line for line in f if line.startswith("flags")), "").split()
    return all(features.get(f) for f in ("avx512bw", "avx512vl", "avx512dq")) or "avx_ne_convert" in flags


needs_onednn_bf16 = pytest.mark.skipif(
    not _runs_onednn_bf16(),
    reason="torch's oneDNN bf16 convs need avx512bw, avx512vl and avx512dq, or avx_ne_convert; this CPU has neither",
)


@needs_onednn_bf16
@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_matches_float64(case, residual):
    x, weight, bias, res, *rest = conv_args(case, dtype=torch.bfloat16, residual=residual, channels_last=True)
    out = OPS.conv2d_bias_act(x, weight, bias, res, *rest)
    assert out.dtype == torch.bfloat16 and out.is_contiguous(memory_format=torch.channels_last)
    ref = conv_reference64(x, weight, bias, res, *rest)
    assert op_mismatch(out, ref, torch.bfloat16) is None
    # The weight is reordered once: a second call reuses it and gives the same answer.
    assert torch.equal(OPS.conv2d_bias_act(x, weight, bias, res, *rest), out)


@needs_onednn_bf16
def test_a_changed_weight_is_reordered_again():
    x, weight, bias, _, *rest = conv_args(CONV_CASES[1], dtype=torch.bfloat16, residual=False)
    first = OPS.conv2d_bias_act(x, weight, bias, None, *rest)
    weight.mul_(2)  # in place: the packed copy is stale
    second = OPS.conv2d_bias_act(x, weight, bias, None, *rest)
    assert op_mismatch(second, conv_reference64(x, weight, bias, None, *rest), torch.bfloat16) is None
    assert not torch.equal(first, second)


@needs_onednn_bf16
def test_weights_made_under_inference_mode_work():
    with torch.inference_mode():
        x, weight, bias, res, *rest = conv_args(CONV_CASES[3], dtype=torch.bfloat16, channels_last=True)
        out = OPS.conv2d_bias_act(x, weight, bias, res, *rest)
    assert op_mismatch(out, conv_reference64(x, weight, bias, res, *rest), torch.bfloat16) is None


@needs_onednn_bf16
def test_conv_opcheck_and_errors():
    x, weight, bias, res, *rest = conv_args(CONV_CASES[3], dtype=torch.bfloat16, channels_last=True)
    torch.library.opcheck(OPS.conv2d_bias_act, (x, weight, bias, res, *rest))
    with pytest.raises(TypeError, match="takes bfloat16 CPU tensors, got torch.float32"):
        OPS.conv2d_bias_act(x.float(), weight.float(), bias.float(), res.float(), *rest)
    with pytest.raises(ValueError, match="reads weights in the logical layout 'oihw' only"):
        OPS.conv2d_bias_act(x, weight, bias, res, *rest, "avx512:blocked")


@needs_onednn_bf16
@pytest.mark.parametrize("name", ["resnet18", "resnet50", "resnext50_32x4d"])
def test_auto_in_bfloat16_takes_onednn_and_holds_the_parity_rule(name, monkeypatch):
    """AMX faked where the CPU lacks it, as the int8 tests below do: oneDNN then runs its
    AVX-512 bf16 kernels, and the answers are what this checks."""
    _fake_amx(monkeypatch, True)
    fast, *_ = run_parity(calibrated(MODELS[name]()), torch.randn(2, 3, 64, 64), dtype=torch.bfloat16)
    info = fastresnet.explain(fast).info
    assert info.backend == "onednn"
    assert "bfloat16 convs: oneDNN's fused conv, on this CPU's AMX tile multiplies (amx_bf16)" in info.notes
    assert all(m.backend == "onednn" for m in fast.modules() if isinstance(m, FusedConv2d))


@needs_onednn_bf16
def test_an_optimized_model_saves_and_loads(tiny_resnet, tmp_path, monkeypatch):
    _fake_amx(monkeypatch, True)
    fast = fastresnet.optimize(tiny_resnet, dtype=torch.bfloat16)
    x = torch.randn(2, 3, 32, 32).bfloat16()
    with torch.no_grad():
        expected = fast(x)  # packs the weights
    torch.save(fast, tmp_path / "fast.pt")
    loaded = torch.load(tmp_path / "fast.pt", weights_only=False)
    with torch.no_grad():
        assert torch.equal(loaded(x), expected)


def test_the_backend_says_why_it_cannot_run():
    (status,) = [s for s in fastresnet.available_backends("cpu") if s.name == "onednn"]
    assert status.available == (HAS_AMX and torch.backends.mkldnn.is_available())
    reasons = fastresnet.backends.BACKENDS["onednn"].not_supported_reasons(torch.device("cpu"), torch.float32)
    assert "it runs bfloat16 or int8 only, not float32" in reasons


def test_without_amx_auto_in_bfloat16_falls_back_with_the_reason(tiny_resnet, tmp_path):
    """A CPU without AMX, faked for the extension's own CPU reading (FASTRESNET_CPU_HIDE)."""
    torch.save(tiny_resnet, tmp_path / "model.pt")
    code = f"""
import torch, fastresnet
model = torch.load({str(tmp_path / 'model.pt')!r}, weights_only=False)
info = fastresnet.explain(fastresnet.optimize(model, dtype=torch.bfloat16)).info
print("backend:", info.backend)
print(info.notes)
try:
    fastresnet.optimize(model, backend="onednn", dtype=torch.bfloat16)
except RuntimeError as error:
    print(error)
"""
    env = dict(os.environ, FASTRESNET_CPU_HIDE="amx_bf16", FASTRESNET_BACKEND="")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    reason = "this CPU has no AMX (amx_bf16), where oneDNN's bfloat16 convs pay"
    assert "backend: cpp-cpu" in result.stdout and f"auto skipped onednn: {reason}" in result.stdout
    assert f"backend 'onednn' cannot run on cpu: {reason}" in result.stdout


# -- int8: oneDNN's int8 conv (onednn::qconv2d_pointwise), auto's choice on CPUs with AMX --------
# oneDNN runs int8 convs on any x86-64 CPU (AMX, VNNI or AVX2 kernels, its choice), so the ops are
# checked everywhere; `auto` takes them only where the CPU has amx_int8 (faked below where not).

INT8_OPS = onednn.register_int8()
INT8_REFERENCE = fastresnet.backends.BACKENDS["reference"].int8_ops()
needs_onednn_int8 = pytest.mark.skipif(
    onednn.int8_unsupported_reason() is not None,
    reason=f"oneDNN's int8 convs are wrong here: {onednn.int8_unsupported_reason()} (refusal tested below)",
)


def _with_zero_point(a: dict, zero_point: int = 37) -> dict:
    compensation = (zero_point * a["weight"].to(torch.int64).sum(dim=(1, 2, 3))).to(torch.int32)
    return dict(a, input_zero_point=zero_point, compensation=compensation)


def assert_within_one_unit(out: torch.Tensor, expected: torch.Tensor, rare: float = 1e-3) -> None:
    """oneDNN may round an output one unit off the reference where it orders the epilogue's
    additions otherwise (the residual's terms): at most one unit, and rarely."""
    assert out.dtype == torch.uint8 and out.shape == expected.shape
    channels_last = torch.channels_last
    assert out.is_contiguous(memory_format=channels_last) == expected.is_contiguous(memory_format=channels_last)
    diff = (out.int() - expected.int()).abs()
    assert diff.max() <= 1 and (diff > 0).float().mean() <= rare


@needs_onednn_int8
@pytest.mark.parametrize("residual,relu", [(True, True), (False, False), (False, True), (True, False)])
@pytest.mark.parametrize("case", INT8_CASES + KERNEL_CASES)
def test_int8_conv_is_the_references_within_one_unit(case, residual, relu):
    a = _with_zero_point(int8_args(case, residual, relu))  # the padding must read the zero point
    for memory_format in (torch.contiguous_format, torch.channels_last):
        a["input"] = a["input"].contiguous(memory_format=memory_format)
        given = a["residual"].clone() if residual else None
        out = INT8_OPS.int8_conv2d(**a)
        assert_within_one_unit(out, INT8_REFERENCE.int8_conv2d(**a))
        if residual:  # oneDNN's sum writes over its accumulator: the caller's residual stays
            assert torch.equal(a["residual"], given)


@needs_onednn_int8
def test_int8_conv_saturates_at_both_ends_and_answers_the_same_on_any_thread_count():
    a = int8_args(INT8_CASES[1], residual=True, relu=False)
    big = dict(a, multiplier=torch.full_like(a["multiplier"], 0.05))  # most outputs at 0 or 255
    out = INT8_OPS.int8_conv2d(**big)
    assert_within_one_unit(out, INT8_REFERENCE.int8_conv2d(**big))
    assert (out == 0).float().mean() > 0.2 and (out == 255).float().mean() > 0.2
    a = _with_zero_point(int8_args((64, 48, 3, 1, 1, 1, 1, 14, 14), residual=True, relu=True))
    answers = answers_on_thread_counts(lambda: INT8_OPS.int8_conv2d(**a))
    assert torch.equal(answers[0], answers[1]) and torch.equal(answers[0], answers[2])


@needs_onednn_int8
def test_int8_weight_is_reordered_again_when_it_or_the_conv_changes():
    a = _with_zero_point(int8_args(INT8_CASES[1], residual=False, relu=True))
    first = INT8_OPS.int8_conv2d(**a)
    a["weight"].neg_()  # in place: the reordered copy is stale
    a["compensation"] = (37 * a["weight"].to(torch.int64).sum(dim=(1, 2, 3))).to(torch.int32)
    second = INT8_OPS.int8_conv2d(**a)
    assert not torch.equal(first, second)
    assert_within_one_unit(second, INT8_REFERENCE.int8_conv2d(**a))
    strided = dict(a, stride=[2, 2])  # the same weight in another conv
    assert_within_one_unit(INT8_OPS.int8_conv2d(**strided), INT8_REFERENCE.int8_conv2d(**strided))


@needs_onednn_int8
def test_int8_conv_refuses_what_it_cannot_take():
    a = _with_zero_point(int8_args(INT8_CASES[1], residual=False, relu=True))
    torch.library.opcheck(INT8_OPS.int8_conv2d, tuple(a.values()))
    with pytest.raises(TypeError, match="expected dtype torch.uint8"):
        INT8_OPS.int8_conv2d(**{**a, "input": a["input"].float()})
    with pytest.raises(ValueError, match="input_zero_point in 0..255"):
        INT8_OPS.int8_conv2d(**{**a, "input_zero_point": 300})
    with pytest.raises(ValueError, match="reads weights in the logical layout 'oihw' only"):
        INT8_OPS.int8_conv2d(**{**a, "weight_layout": "avx2:int8-blocked"})
    with pytest.raises(ValueError, match="oneDNN computes the compensation itself"):
        INT8_OPS.int8_conv2d(**{**a, "compensation": torch.zeros_like(a["compensation"])})


def _fake_amx(monkeypatch, present: bool) -> None:
    """This process's reading of the CPU, with amx_int8 (and amx_bf16) as given."""
    features = dict(_ext.cpu_features(), amx_int8=present, amx_bf16=present)
    monkeypatch.setattr(_ext, "cpu_features", lambda: features)
    for name in ("FASTRESNET_BACKEND", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("amx", [True, False])
def test_auto_in_int8_takes_onednn_where_the_cpu_has_amx_and_says_why(tiny_resnet, monkeypatch, amx):
    _fake_amx(monkeypatch, amx)
    fast = fastresnet.quantize(tiny_resnet, calibration_batches())
    info = fastresnet.explain(fast).info
    reason = "this CPU has no AMX (amx_int8), where oneDNN's int8 convs pay"
    if amx:
        assert info.backend == "onednn"
        assert any("oneDNN's (torch's onednn::qconv2d_pointwise), on this CPU's AMX" in n for n in info.notes)
        assert {m.backend for m in fast.modules() if isinstance(m, QuantizedConv2d)} == {"onednn"}
    else:
        # (on a CPU without VNNI the note goes on to say why oneDNN would saturate there as well)
        assert info.backend == "cpp-cpu" and any(n.startswith(f"auto skipped onednn: {reason}") for n in info.notes)
        with pytest.raises(RuntimeError, match=rf"backend 'onednn' cannot run on cpu: {re.escape(reason)}"):
            fastresnet.quantize(tiny_resnet, calibration_batches(), backend="onednn")


@needs_onednn_int8
@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_each_conv_of_an_onednn_int8_model_is_the_references_within_one_unit(name, monkeypatch):
    """AMX faked where the CPU lacks it (the backend refuses such CPUs for speed only): oneDNN
    then runs its VNNI kernels, and the answers are what this checks. On the inputs the model itself hands each conv. (Whole outputs are not compared with
    the reference int8 model's: a random-weight ResNet-50 at 32x32 turns one unit's difference
    at its second conv into a tenth of the output scale. Against float the int8 model is held
    by test_int8.py, which runs auto's backend.)"""
    _fake_amx(monkeypatch, True)
    model = calibrated(getattr(torchvision.models, name)(num_classes=10), image_size=32)
    fast = fastresnet.quantize(model, calibration_batches(), backend="onednn")
    checked = []

    def against_reference(conv, args, out):
        residual = args[1] if len(args) > 1 else None
        expected = INT8_REFERENCE.int8_conv2d(
            args[0], conv.weight, conv.multiplier, conv.bias, conv.compensation, residual, conv.residual_multiplier,
            conv.residual.zero_point if conv.residual else 0, conv.input.zero_point, conv.output.zero_point,
            conv.stride, conv.padding, conv.dilation, conv.groups, conv.relu,
        )  # fmt: skip
        assert_within_one_unit(out, expected)
        checked.append(conv)

    convs = [m for m in fast.modules() if isinstance(m, QuantizedConv2d)]
    for conv in convs:
        conv.register_forward_hook(against_reference)
    with torch.no_grad():
        fast(torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(5)))
    assert len(checked) == len(convs) and {c.backend for c in convs} == {"onednn"}


@needs_onednn_int8
def test_an_onednn_int8_model_saves_and_loads(tiny_resnet, tmp_path, monkeypatch):
    _fake_amx(monkeypatch, True)  # as above
    fast = fastresnet.quantize(tiny_resnet, calibration_batches(), backend="onednn")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = fast(x)  # reorders the weights
    torch.save(fast, tmp_path / "int8.pt")
    loaded = torch.load(tmp_path / "int8.pt", weights_only=False)
    with torch.no_grad():
        assert torch.equal(loaded(x), expected)


def test_int8_is_refused_where_onednn_would_saturate(tiny_resnet, tmp_path):
    """oneDNN capped below VNNI (as on a CPU without it) multiplies by VPMADDUBSW, which
    saturates: the backend and its op refuse, rather than answer wrongly."""
    torch.save(tiny_resnet, tmp_path / "model.pt")
    code = f"""
import sys, torch, fastresnet
sys.path.insert(0, {os.path.dirname(__file__)!r})
from test_int8 import INT8_CASES, calibration_batches, int8_args
from fastresnet.ops import onednn
model = torch.load({str(tmp_path / 'model.pt')!r}, weights_only=False)
for call in (lambda: fastresnet.quantize(model, calibration_batches(), backend="onednn"),
             lambda: onednn.register_int8().int8_conv2d(**int8_args(INT8_CASES[1], False, True))):
    try:
        call()
    except RuntimeError as error:
        print(error)
"""
    env = dict(os.environ, ONEDNN_MAX_CPU_ISA="AVX2")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    if _ext.cpu_features().get("avx512_vnni"):
        reason = "ONEDNN_MAX_CPU_ISA=AVX2 keeps oneDNN below VNNI, where its int8 convs saturate in int16 (VPMADDUBSW)"
    else:  # the CPU's own lack comes first
        reason = "this CPU has no AVX512_VNNI, without which oneDNN's int8 convs saturate in int16 (VPMADDUBSW)"
    assert f"backend 'onednn' cannot run on cpu: " in result.stdout and reason in result.stdout
    assert f"fastresnet::onednn_int8_conv2d: {reason}" in result.stdout
