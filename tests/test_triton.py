"""The Triton backend: kernels against float64, every tile config, whole models, dispatch,
the autotune cache. Without a GPU all of it runs through Triton's interpreter on CPU tensors
(conftest sets TRITON_INTERPRET=1), so shapes are small."""

import json
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torchvision.models import resnet

import fastresnet
from conv_cases import CONV_CASES, conv_args, conv_reference64
from fastresnet.numerics import OP_TOLERANCES, compare_to_reference, no_tf32, op_mismatch
from fastresnet.triton import configs
from fastresnet.triton.register import register

from conftest import calibrated, double_copy

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
OPS = register()
DTYPES = [torch.float32, torch.float16]  # bf16 arithmetic is broken in the interpreter
if DEVICE == "cuda":
    DTYPES.append(torch.bfloat16)


def assert_close_to_float64(out, reference, dtype):
    tol = OP_TOLERANCES[dtype]
    assert out.dtype == dtype
    assert op_mismatch(out, reference, tol) is None


@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("channels_last", [True, False])
def test_conv_matches_float64(case, channels_last):
    for dtype in DTYPES:
        for residual, relu in [(True, True), (False, False)]:
            args = conv_args(case, dtype, residual, relu, channels_last, DEVICE)
            out = OPS.conv2d_bias_act(*args)
            assert out.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
            assert_close_to_float64(out, conv_reference64(*args), dtype)


@pytest.mark.parametrize("case", [CONV_CASES[1], CONV_CASES[3]])
def test_conv_relu_without_residual_and_residual_without_relu(case):
    for residual, relu in [(False, True), (True, False)]:
        args = conv_args(case, torch.float32, residual, relu, True, DEVICE)
        assert_close_to_float64(OPS.conv2d_bias_act(*args), conv_reference64(*args), torch.float32)


@pytest.mark.parametrize("layer_and_config", configs.all_conv_configs(), ids=lambda lc: f"k{lc[0].kernel}-{lc[1]}")
def test_every_tile_config_is_correct(layer_and_config, monkeypatch):
    """Each config the autotuner may pick, on a small layer of the class that gets it; odd
    sizes leave partial tiles in every dimension."""
    layer, config = layer_and_config
    monkeypatch.setenv(configs.ENV_PIN, str(config))
    groups = min(layer.groups, 4)
    c_in = layer.c_in // layer.groups * groups
    c_out = layer.c_out // layer.groups * groups
    k = layer.kernel
    case = (c_in, c_out, k, layer.stride, k // 2, 1, groups, 11, 9)
    for dtype in DTYPES:
        args = conv_args(case, dtype, True, True, True, DEVICE)
        assert_close_to_float64(OPS.conv2d_bias_act(*args), conv_reference64(*args), dtype)


def test_conv_propagates_nan_and_inf():
    x, weight, bias, res, *rest = conv_args(CONV_CASES[1], torch.float32, True, True, True, DEVICE)
    x[0, 0, 4, 4] = float("nan")
    res[1, 0, 0, 0] = float("inf")
    out = OPS.conv2d_bias_act(x, weight, bias, res, *rest)
    expected = conv_reference64(x, weight, bias, res, *rest)
    assert torch.equal(out.isnan(), expected.isnan()) and out.isnan().any()
    assert torch.equal(out.isinf(), expected.isinf()) and out.isinf().any()


def test_batch_zero_and_bad_arguments():
    x, weight, bias, res, *rest = conv_args(CONV_CASES[1], torch.float32, True, True, True, DEVICE)
    assert OPS.conv2d_bias_act(x[:0], weight, bias, res[:0], *rest).shape == (0, 8, 9, 9)
    with pytest.raises(ValueError, match="fastresnet::triton_conv2d_bias_act: expected 8 input channels"):
        OPS.conv2d_bias_act(x[:, :4], weight, bias, res, *rest)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("channels_last", [True, False])
def test_pools_and_add_relu(dtype, channels_last):
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(2, 5, 13, 11, device=DEVICE).to(dtype).contiguous(memory_format=fmt)
    x[1, 2, 3, 3] = float("nan")
    for ceil_mode in (False, True):
        out = OPS.max_pool2d(x, [3, 3], [2, 2], [1, 1], [1, 1], ceil_mode)
        expected = F.max_pool2d(x.double(), 3, 2, 1, 1, ceil_mode)
        assert torch.equal(out.isnan(), expected.isnan()) and out.isnan().any()
        torch.testing.assert_close(out.double().nan_to_num(), expected.nan_to_num(), atol=0, rtol=0)
    clean = x.nan_to_num()
    assert_close_to_float64(OPS.global_avg_pool(clean), clean.double().mean((2, 3)), dtype)
    other = torch.randn_like(clean)
    assert_close_to_float64(OPS.add_relu(clean, other), (clean.double() + other.double()).relu(), dtype)


def test_ops_pass_opcheck():
    for channels_last in (True, False):
        torch.library.opcheck(OPS.conv2d_bias_act, conv_args(CONV_CASES[2], channels_last=channels_last, device=DEVICE))
    x = torch.randn(2, 4, 9, 9, device=DEVICE).to(memory_format=torch.channels_last)
    torch.library.opcheck(OPS.max_pool2d, (x, [3, 3], [2, 2], [1, 1], [1, 1], False))
    torch.library.opcheck(OPS.global_avg_pool, (x,))
    torch.library.opcheck(OPS.add_relu, (x, x.clone()))


@pytest.mark.parametrize("name", ["resnet18", "resnext50_32x4d"])
def test_whole_model_matches_eager(name):
    model = calibrated(getattr(resnet, name)(num_classes=10), image_size=32).to(DEVICE)
    fast = fastresnet.optimize(model, backend="triton")
    assert fastresnet.explain(fast).info.backend == "triton"
    x = torch.randn(2, 3, 32, 32, device=DEVICE)
    with torch.no_grad(), no_tf32():
        result = compare_to_reference(fast(x), model(x), double_copy(model)(x.double()), torch.float32)
    assert result.ok, result
    # The entry conv converted the input once: the weights are NHWC-ordered for the kernel.
    assert fast.conv1.entry_channels_last and fast.conv1.weight.is_contiguous(memory_format=torch.channels_last)


def test_auto_never_picks_the_interpreter_and_reasons_are_given(monkeypatch, tiny_resnet):
    if DEVICE == "cuda":
        pytest.skip("on a GPU machine auto is expected to pick Triton; this checks the CPU side")
    assert fastresnet.explain(fastresnet.optimize(tiny_resnet)).info.backend == "cpp-cpu"  # not the interpreter
    in_bf16 = fastresnet.optimize(tiny_resnet, dtype=torch.bfloat16)  # bf16: onednn on AMX CPUs, cpp-cpu elsewhere
    assert fastresnet.explain(in_bf16).info.backend in ("onednn", "cpp-cpu")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    (status,) = [s for s in fastresnet.available_backends("cpu") if s.name == "triton"]
    assert "only under its interpreter (TRITON_INTERPRET=1" in status.reasons[0]
    monkeypatch.setenv("FASTRESNET_DISABLE_TRITON", "1")
    with pytest.raises(RuntimeError, match="disabled by FASTRESNET_DISABLE_TRITON=1"):
        fastresnet.optimize(tiny_resnet, backend="triton")
    (cuda,) = [s for s in fastresnet.available_backends("cuda") if s.name == "triton"]
    assert "CUDA is not available" in cuda.reasons


def test_cpu_kernels_refuse_to_run_without_the_interpreter(monkeypatch):
    if DEVICE == "cuda":
        pytest.skip("checks the CPU-tensor guard")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(RuntimeError, match="run on CPU tensors only under the interpreter"):
        OPS.global_avg_pool(torch.randn(1, 2, 3, 3))


# -- configs, autotuning and the cache ------------------------------------------------------


def test_pinned_config_is_parsed_and_checked():
    assert str(configs.ConvConfig.parse("64,32,16,4,2")) == "64,32,16,4,2"
    with pytest.raises(ValueError, match="BLOCK_M,BLOCK_N,BLOCK_K,num_warps,num_stages"):
        configs.ConvConfig.parse("64,32")
    with pytest.raises(ValueError, match="powers of two >= 16"):
        configs.ConvConfig.parse("64,24,16,4,2")


def test_config_key_ignores_the_batch():
    x, weight, bias, res, stride, padding, dilation, groups, relu = conv_args(CONV_CASES[1], channels_last=True)
    key = configs.conv_key(x, weight, stride, padding, dilation, groups, True, relu)
    assert key == configs.conv_key(torch.cat([x, x]), weight, stride, padding, dilation, groups, True, relu)
    assert key != configs.conv_key(x, weight, stride, padding, dilation, groups, False, relu)


IDENTITY = {"gpu": "Test GPU", "capability": [9, 0], "torch": "t", "triton": "3"}


def test_cache_round_trip(tmp_path):
    path = tmp_path / "cache.json"
    cache = configs.ConfigCache(path, IDENTITY)
    cache.put("layer", configs.ConvConfig(64, 64, 32, 4, 3))
    again = configs.ConfigCache(path, IDENTITY)
    assert again.get("layer") == configs.ConvConfig(64, 64, 32, 4, 3)
    assert json.loads(path.read_text())["identity"] == IDENTITY


@pytest.mark.parametrize(
    "content,reason",
    [
        ("{not json", "Expecting property name"),
        (json.dumps({"format": 1, "identity": {**IDENTITY, "gpu": "Other"}, "configs": {}}), "written for"),
        (json.dumps({"format": 1, "identity": IDENTITY, "configs": {"k": "1,2"}}), "BLOCK_M,BLOCK_N"),
        (json.dumps([1, 2]), "unknown format"),
    ],
)
def test_corrupt_or_foreign_cache_is_ignored_with_a_warning(tmp_path, content, reason):
    path = tmp_path / "cache.json"
    path.write_text(content)
    with pytest.warns(UserWarning, match=f"ignoring the Triton autotune cache .*{reason}"):
        cache = configs.ConfigCache(path, IDENTITY)
    assert cache.entries == {}


def test_autotune_rejects_a_wrong_config_and_keeps_the_fastest_correct_one(monkeypatch):
    """The selection logic, with a fake timer: a config that gives wrong answers is never
    chosen, however fast it is."""
    import triton.testing

    from fastresnet.triton import conv

    fast_but_wrong, slow, fastest = (configs.ConvConfig(64, 16, 16, 4, stages) for stages in (1, 2, 3))
    fake_milliseconds = {fast_but_wrong: 0.1, slow: 2.0, fastest: 1.0}
    last_config = []

    def launch(x, weight, bias, residual, y, stride, padding, dilation, groups, relu, config):
        last_config.append(config)
        conv.launch(x, weight, bias, residual, y, stride, padding, dilation, groups, relu, config)
        if config == fast_but_wrong:
            y.add_(1.0)  # a miscompiled config
        return y

    def fake_do_bench(fn, **kwargs):
        fn()
        return fake_milliseconds[last_config[-1]]

    monkeypatch.setattr(triton.testing, "do_bench", fake_do_bench)
    x, weight, bias, res, stride, padding, dilation, groups, relu = conv_args(CONV_CASES[1], channels_last=True)
    args = (x, weight, bias, res, torch.empty_like(res), stride, padding, dilation, groups, relu)
    with pytest.warns(UserWarning, match=r"configs rejected: 64,16,16,4,1: \d+ of \d+ elements beyond atol"):
        assert configs.autotune(args, launch, [fast_but_wrong, slow, fastest]) == fastest


# -- the GPU compile check ------------------------------------------------------------------


@pytest.fixture(scope="module")
def aot_rows():
    """Every kernel under every config, compiled for sm_80 and sm_90 in a subprocess (the
    interpreter, on in this process, makes kernels uncompilable)."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    result = subprocess.run(
        [sys.executable, "-m", "fastresnet.triton.aot", "--json"], capture_output=True, text=True, env=env
    )
    assert result.stdout.strip(), result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_every_kernel_compiles_for_sm80_and_sm90(aot_rows):
    conv_rows = [r for r in aot_rows if r["kernel"].startswith("conv")]
    assert len(conv_rows) == len(configs.all_conv_configs()) * 3 * 2  # configs x dtypes x archs
    assert {r["kernel"] for r in aot_rows} >= {"max_pool2d", "global_avg_pool", "add_relu"}
    assert {r["arch"] for r in aot_rows} == {80, 90}
    problems = [(r["kernel"], r["dtype"], r["arch"], r["problems"]) for r in aot_rows if r["problems"]]
    assert problems == []


def test_half_precision_convs_use_tensor_cores(aot_rows):
    half = [r for r in aot_rows if r["kernel"].startswith("conv") and r["dtype"] != "float32"]
    assert half and all(r["tensor_cores"] for r in half)


def test_register_use_is_read_and_only_float32_convs_spill(aot_rows):
    """cuobjdump (shipped with Triton) read every cubin's registers and stack. The float16
    and bfloat16 convs and the pools do not spill; the float32 conv tiles spill a little
    (8-48 bytes with Triton 3.8, the price of BLOCK_K 32: see conv_configs): a larger spill
    means a kernel or config change made them worse."""
    assert [r["kernel"] for r in aot_rows if r["registers"] is None or r["stack_bytes"] is None] == []
    spills = {(r["kernel"], r["dtype"], r["arch"]): r["stack_bytes"] for r in aot_rows if r["stack_bytes"]}
    assert {key for key in spills if key[1] != "float32" or not key[0].startswith("conv")} == set()
    assert max(spills.values(), default=0) <= 64, spills


@pytest.mark.skipif(DEVICE != "cuda", reason="needs a CUDA GPU: ResNet-50 at 224x224 is far too slow for the interpreter")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_resnet50_224_parity_on_gpu(dtype):
    model = calibrated(resnet.resnet50(), image_size=64).to(DEVICE)
    fast = fastresnet.optimize(model, backend="triton", dtype=dtype)
    eager = double_copy(model).to(dtype)
    x = torch.randn(8, 3, 224, 224, device=DEVICE)
    with torch.no_grad(), no_tf32():
        result = compare_to_reference(fast(x.to(dtype)), eager(x.to(dtype)), double_copy(model)(x.double()), dtype)
    assert result.ok, result


def test_compile_and_export_see_the_triton_ops():
    block = calibrated(torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3), torch.nn.BatchNorm2d(16), resnet.BasicBlock(16, 16)))
    fast = fastresnet.optimize(block.to(DEVICE), backend="triton")
    x = torch.randn(1, 3, 12, 12, device=DEVICE)
    with torch.no_grad():
        expected = fast(x)
        torch._dynamo.reset()
        torch.testing.assert_close(torch.compile(fast, fullgraph=True)(x), expected, atol=1e-5, rtol=1e-5)
    exported = torch.export.export(fast, (x,))
    targets = {str(n.target) for n in exported.graph.nodes if "fastresnet" in str(n.target)}
    assert targets == {"fastresnet.triton_conv2d_bias_act.default"}
    with torch.no_grad():
        torch.testing.assert_close(exported.module()(x), expected, atol=1e-5, rtol=1e-5)
