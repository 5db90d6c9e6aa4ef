"""optimize(): its arguments, bad inputs to the optimized model, and edge cases."""

import copy

import pytest
import torch
from torch import nn

import fastresnet
from fastresnet import _ext
from fastresnet.nn import FusedConv2d
from fastresnet.nn.op_holder import OpHolder


@pytest.fixture
def fast(tiny_resnet):
    return fastresnet.optimize(tiny_resnet)


def test_training_mode_is_refused(tiny_resnet):
    tiny_resnet.train()
    with pytest.raises(ValueError, match=r"call model\.eval\(\) first"):
        fastresnet.optimize(tiny_resnet)
    tiny_resnet.eval()
    tiny_resnet.layer2[0].bn1.train()
    with pytest.raises(ValueError, match=r"layer2\.0\.bn1"):
        fastresnet.optimize(tiny_resnet)


@pytest.mark.parametrize(
    "x,error,message",
    [
        (torch.randn(2, 4, 32, 32), ValueError, r"expected 3 input channels, shape \(N, 3, H, W\); got shape \(2, 4, 32, 32\)"),
        (torch.randn(3, 32, 32), ValueError, r"expected a 4-D input \(N, C, H, W\), got a 3-D tensor"),
        (torch.randn(1, 1, 3, 32, 32), ValueError, "got a 5-D tensor"),
        (torch.ones(2, 3, 32, 32, dtype=torch.int64), TypeError, "expected dtype torch.float32, got torch.int64"),
        (torch.randn(2, 3, 32, 32, dtype=torch.float64), TypeError, "expected dtype torch.float32, got torch.float64"),
        (torch.randn(2, 3, 32, 32, device="meta"), ValueError, "expected a tensor on device cpu, got one on meta"),
    ],
)
def test_bad_inputs_get_clear_errors(fast, x, error, message):
    with pytest.raises(error, match=message) as info:
        fast(x)
    assert "optimized model input (first fused layer 'conv1')" in str(info.value)


def test_batch_zero_returns_an_empty_output(fast):
    with torch.no_grad():
        out = fast(torch.empty(0, 3, 32, 32))
    assert out.shape == (0, 10)


def test_channels_last_and_non_contiguous_inputs_match_contiguous(tiny_resnet, fast):
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = fast(x.contiguous())
        torch.testing.assert_close(fast(x.to(memory_format=torch.channels_last)), expected, atol=1e-5, rtol=1e-5)
        strided = x[:, :, ::2, ::2]
        assert not strided.is_contiguous()
        torch.testing.assert_close(fast(strided), fast(strided.contiguous()), atol=1e-5, rtol=1e-5)
        transposed = x.transpose(2, 3)
        torch.testing.assert_close(fast(transposed), tiny_resnet(transposed), atol=1e-4, rtol=1e-4)


def test_nan_and_inf_propagate_as_in_eager(tiny_resnet, fast):
    x = torch.randn(4, 3, 32, 32)
    x[1, 0, 5, 5] = float("nan")
    x[2, 1, 7, 7] = float("inf")
    with torch.no_grad():
        eager, fused = tiny_resnet(x), fast(x)
    assert torch.equal(eager.isnan(), fused.isnan())
    assert torch.equal(eager.isinf(), fused.isinf())
    assert fused[1].isnan().all()
    finite = ~eager.isnan().any(1) & ~eager.isinf().any(1)
    assert finite.sum() == 2
    torch.testing.assert_close(fused[finite], eager[finite], atol=1e-4, rtol=1e-4)


def test_unknown_backend_lists_the_valid_ones(tiny_resnet):
    with pytest.raises(ValueError, match=r"unknown backend 'tensorrt'; valid backends are 'auto', 'triton', 'onednn', 'cpp-cpu', 'cpp-cuda', 'reference'"):
        fastresnet.optimize(tiny_resnet, backend="tensorrt")


def test_unavailable_backend_raises_with_its_reasons(tiny_resnet):
    with pytest.raises(
        RuntimeError, match=r"backend 'cpp-cpu' cannot run on cpu: the C\+\+ CPU kernels take float32, bfloat16 or int8, not float16"
    ):
        fastresnet.optimize(tiny_resnet, backend="cpp-cpu", dtype=torch.float16)
    with pytest.raises(RuntimeError, match=r"backend 'cpp-cuda' cannot run on cpu: the CUDA C\+\+ kernels take CUDA tensors"):
        fastresnet.optimize(tiny_resnet, backend="cpp-cuda")


def test_the_old_cpp_name_still_works_with_a_deprecation_warning(tiny_resnet):
    with pytest.warns(DeprecationWarning, match="backend 'cpp' is deprecated.*using 'cpp-cpu' for cpu"):
        fast = fastresnet.optimize(tiny_resnet, backend="cpp")
    assert fastresnet.explain(fast).info.backend == "cpp-cpu"


@pytest.mark.parametrize("dtype", [torch.float64, torch.uint8, "float8"])
def test_unsupported_dtype_lists_the_valid_ones(tiny_resnet, dtype):
    with pytest.raises(ValueError, match=r"valid dtypes are float32, float16, bfloat16, int8 \(with calibration"):
        fastresnet.optimize(tiny_resnet, dtype=dtype)


@pytest.mark.parametrize("dtype,expected", [("bf16", torch.bfloat16), ("half", torch.float16), (None, torch.float32)])
def test_dtype_names_and_default(tiny_resnet, dtype, expected):
    fast = fastresnet.optimize(tiny_resnet, dtype=dtype)
    assert fast.conv1.weight.dtype == expected
    assert fast.fc.weight.dtype == expected  # eager leftovers are cast too
    assert fastresnet.explain(fast).info.dtype == expected


def test_default_dtype_follows_a_half_model(tiny_resnet):
    fast = fastresnet.optimize(tiny_resnet.half())
    assert fast.conv1.weight.dtype == torch.float16


def test_not_a_module_and_already_optimized(fast):
    with pytest.raises(TypeError, match="expects a torch.nn.Module, got function"):
        fastresnet.optimize(lambda x: x)
    with pytest.raises(ValueError, match="already optimized"):
        fastresnet.optimize(fast)


def test_model_on_several_devices_is_refused(tiny_resnet):
    tiny_resnet.fc.to("meta")
    with pytest.raises(ValueError, match="expects a model on one device"):
        fastresnet.optimize(tiny_resnet)


def test_optimized_model_holds_buffers_not_parameters(fast):
    assert list(fast.conv1.parameters()) == []
    assert {"weight", "bias"} <= dict(fast.conv1.named_buffers()).keys()
    state = fast.state_dict()
    clone = copy.deepcopy(fast)
    clone.load_state_dict(state)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(clone(x), fast(x))


def test_environment_override_replaces_auto(tiny_resnet, monkeypatch):
    monkeypatch.setenv("FASTRESNET_BACKEND", "reference")
    fast = fastresnet.optimize(tiny_resnet)
    assert "backend chosen by FASTRESNET_BACKEND=reference" in fastresnet.explain(fast).info.notes
    monkeypatch.setenv("FASTRESNET_BACKEND", "cpp-cpu")
    with pytest.raises(RuntimeError, match="backend 'cpp-cpu' cannot run on cpu"):
        fastresnet.optimize(tiny_resnet, dtype=torch.float16)
    # An explicit argument wins over the environment.
    assert fastresnet.optimize(tiny_resnet, backend="reference").conv1.backend == "reference"
    monkeypatch.setenv("FASTRESNET_BACKEND", "nope")
    with pytest.raises(ValueError, match="unknown backend 'nope'"):
        fastresnet.optimize(tiny_resnet)


def test_every_fused_conv_uses_the_chosen_backend(fast):
    convs = [m for m in fast.modules() if isinstance(m, FusedConv2d)]
    assert convs and all(m.backend == "cpp-cpu" for m in convs)  # auto on CPU: the C++ kernels
    assert all(m.op._name == "fastresnet::cpp_conv2d_bias_act" for m in convs)
    # Activations stay channels_last: converted once, at the entry. Weights are laid out once
    # for the active CPU tier's kernels, and the layout is named on the module: blocked,
    # (groups, C_out/groups/B, KH, KW, C_in/groups, B), or transformed for Winograd.
    assert [m.entry_channels_last for m in convs] == [True] + [False] * (len(convs) - 1)
    tier = next(t for t in _ext.cpu_tiers() if t["name"] == _ext.cpu_isa())
    assert convs[0].weight_layout == f"{tier['name']}:blocked"
    assert convs[0].weight.shape == (1, -(-64 // tier["block"]), 7, 7, 3, tier["block"])
    kinds = {"blocked", "winograd2x2", "winograd4x4"}
    assert {m.weight_layout for m in convs} == {f"{tier['name']}:{kind}" for kind in kinds}
    assert all(m.weight.is_contiguous() for m in convs)
    assert not any(isinstance(m, (nn.Conv2d, nn.BatchNorm2d)) for m in fast.modules())


def test_a_model_saved_with_the_old_cpp_backend_name_still_loads(tiny_resnet, tmp_path):
    fast = fastresnet.optimize(tiny_resnet)
    for module in fast.modules():
        if isinstance(module, OpHolder):
            module.backend = "cpp"  # as optimize() named the C++ kernels before they were two backends
    torch.save(fast, tmp_path / "old.pt")
    with pytest.warns(DeprecationWarning, match="backend 'cpp' is deprecated"):
        loaded = torch.load(tmp_path / "old.pt", weights_only=False)
    assert {m.backend for m in loaded.modules() if isinstance(m, OpHolder)} == {"cpp-cpu"}
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), fast(x))


def test_save_and_load_a_whole_optimized_model(fast, tmp_path):
    torch.save(fast, tmp_path / "fast.pt")
    loaded = torch.load(tmp_path / "fast.pt", weights_only=False)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), fast(x))
    assert loaded.conv1.op is fast.conv1.op
    assert fastresnet.explain(loaded).info.backend == "cpp-cpu"


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_a_reduced_dtype_model_takes_float32_and_answers_in_the_inputs_dtype(tiny_resnet, dtype):
    backend = "auto" if dtype == torch.bfloat16 else "reference"
    fast = fastresnet.optimize(tiny_resnet, dtype=dtype, backend=backend)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out32, out_reduced = fast(x), fast(x.to(dtype))
    assert out32.dtype == torch.float32 and out_reduced.dtype == dtype
    # One conversion on entry, the same computation after it.
    assert torch.equal(out32, out_reduced.float())
    assert tiny_resnet.conv1.weight.dtype == torch.float32  # the user's model untouched
    assert "converted to" in " ".join(fastresnet.explain(fast).info.notes)
    assert f"every layer below runs in {str(dtype).removeprefix('torch.')}" in str(fastresnet.explain(fast))


def test_the_dtype_boundary_survives_pickling_and_copies_and_errors(tiny_resnet):
    import io

    from fastresnet.nn import dtype_boundary

    fast = fastresnet.optimize(tiny_resnet, dtype=torch.bfloat16)
    buffer = io.BytesIO()
    torch.save(fast, buffer)
    buffer.seek(0)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        for clone in (torch.load(buffer, weights_only=False), copy.deepcopy(fast)):
            assert clone(x).dtype == torch.float32 and torch.equal(clone(x), fast(x))
        with pytest.raises(TypeError, match=r"takes a floating-point input \(float32, converted once, or bfloat16"):
            fast(torch.ones(1, 3, 32, 32, dtype=torch.uint8))
        with pytest.raises(ValueError, match="expected 3 input channels"):
            fast(torch.randn(1, 4, 32, 32))
    # A failed call leaves nothing behind for the next one.
    assert id(fast) not in getattr(dtype_boundary._calls, "dtypes", {})


def test_a_float32_model_has_no_dtype_boundary(tiny_resnet):
    from fastresnet.nn.dtype_boundary import has_dtype_boundary

    assert not has_dtype_boundary(fastresnet.optimize(tiny_resnet))
    assert has_dtype_boundary(fastresnet.optimize(tiny_resnet, dtype=torch.bfloat16))
