"""The onednn backend (fastresnet/ops/onednn.py): bfloat16 convs through oneDNN's fused conv,
chosen by `auto` in bfloat16 on CPUs with AMX. Its ops run on any CPU with oneDNN (oneDNN
picks its own kernels), so they are checked wherever torch's oneDNN runs bf16 convs at all
(AVX-512 BW/VL/DQ or AVX-NE-CONVERT: not on an AVX2-only CPU such as AMD Zen 3); the
whole-model tests need the backend itself, so a CPU with AMX; the choice is checked on a faked
CPU without it."""

import os
import subprocess
import sys

import pytest
import torch

import fastresnet
from conftest import calibrated
from conv_cases import CONV_CASES, conv_args, conv_reference64
from fastresnet import _ext
from fastresnet.nn import FusedConv2d
from fastresnet.numerics import OP_TOLERANCES, op_mismatch
from fastresnet.ops import onednn
from test_models import MODELS, run_parity

OPS = onednn.register()
HAS_AMX = bool(_ext.cpu_features().get("amx_bf16"))
needs_amx = pytest.mark.skipif(not HAS_AMX, reason="the onednn backend is chosen only on CPUs with AMX (amx_bf16)")


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


@needs_amx
@pytest.mark.parametrize("name", ["resnet18", "resnet50", "resnext50_32x4d"])
def test_auto_in_bfloat16_takes_onednn_and_holds_the_parity_rule(name):
    fast, *_ = run_parity(calibrated(MODELS[name]()), torch.randn(2, 3, 64, 64), dtype=torch.bfloat16)
    info = fastresnet.explain(fast).info
    assert info.backend == "onednn"
    assert "bfloat16 convs: oneDNN's fused conv, on this CPU's AMX tile multiplies (amx_bf16)" in info.notes
    assert all(m.backend == "onednn" for m in fast.modules() if isinstance(m, FusedConv2d))


@needs_amx
def test_an_optimized_model_saves_and_loads(tiny_resnet, tmp_path):
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
    assert "it runs bfloat16 only, not float32" in reasons


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
