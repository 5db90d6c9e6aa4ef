"""The backend registry, the compiled extension's status, and explain()."""

import pytest
import torch

import fastresnet
from fastresnet import _ext, backends
from fastresnet.ops import SCHEMAS, kernel_missing


def test_available_backends_lists_each_with_reasons():
    statuses = {s.name: s for s in fastresnet.available_backends("cpu")}
    assert set(statuses) == {"reference", "onednn", "cpp-cpu", "cpp-cuda", "triton"}
    assert statuses["reference"].available and statuses["reference"].reasons == ()
    assert statuses["cpp-cpu"].available  # the CPU kernels; this machine (and CI's) runs their tiers
    assert statuses["cpp-cuda"].reasons == ("the CUDA C++ kernels take CUDA tensors, not cpu (on CPU: cpp-cpu)",)
    # Best first; the backends of other devices last.
    assert [s.name for s in fastresnet.available_backends("cpu")] == ["onednn", "cpp-cpu", "reference", "triton", "cpp-cuda"]


def test_unsupported_device_type_is_explained():
    (reference,) = [s for s in fastresnet.available_backends("mps") if s.name == "reference"]
    assert not reference.available
    assert "device type 'mps' is not supported" in reference.reasons[0]


def test_the_extension_is_built_and_reports_its_build():
    # .ci/setup builds it; a failure to load is a failed install, not something to skip.
    assert _ext.load_error() is None
    info = _ext.build_info()
    assert info["torch_version"] == torch.__version__.split("+")[0]
    # Which kernels exist is the dispatcher's answer, for every op of the one list.
    backends.BACKENDS["cpp-cpu"].ops()
    assert kernel_missing("cpp", "CPU") == []
    assert kernel_missing("cpp", "CUDA") == ([] if info["cuda"] else list(SCHEMAS))


def test_missing_extension_is_reported_and_auto_falls_back(monkeypatch, tiny_resnet):
    monkeypatch.setattr(_ext, "_load", lambda: (None, "the compiled extension fastresnet._C could not be loaded (test)"))
    statuses = {s.name: s for s in fastresnet.available_backends("cpu")}
    assert statuses["cpp-cpu"].reasons == ("the compiled extension fastresnet._C could not be loaded (test)",)
    fast = fastresnet.optimize(tiny_resnet)
    info = fastresnet.explain(fast).info
    assert info.backend == "reference"
    assert any("auto skipped cpp-cpu: the compiled extension fastresnet._C could not be loaded" in n for n in info.notes)


def test_auto_with_no_backend_at_all_says_why():
    with pytest.raises(RuntimeError, match="no fastresnet backend can run on mps"):
        backends.select_backend("auto", torch.device("mps"))


def test_explain_prints_a_per_layer_table(tiny_resnet):
    fast = fastresnet.optimize(tiny_resnet)
    text = str(fastresnet.explain(fast))
    assert text.startswith("fastresnet: backend=cpp-cpu, dtype=float32, device=cpu;")
    assert "| conv1 " in text and "conv+bn+relu (stem)" in text
    assert "layer2.0.conv2 + layer2.0.bn2 + add + layer2.0.relu" in text
    assert "layer2.0.downsample.0 + layer2.0.downsample.1" in text
    assert "| fc     | Linear | no fused kernel for Linear" in text
    assert repr(fastresnet.explain(fast)) == text
    info = fastresnet.explain(fast).info
    # tiny ResNet: stem conv + maxpool + 4 blocks (2 convs each, 3 downsamples) + avgpool.
    assert len(info.fused) == 1 + 1 + 8 + 3 + 1


def test_explain_refuses_a_model_that_was_not_optimized(tiny_resnet):
    with pytest.raises(ValueError, match="expects a model returned by fastresnet.optimize"):
        fastresnet.explain(tiny_resnet)


def test_the_extension_measures_the_fma_peak():
    from fastresnet.bench.machine import measured_cpu_peak

    one = _ext.extension().fma_peak_gflops(1, 2_000_000)
    assert 1 < one < 1000  # GFLOP/s of one core: any real AVX2 or AVX-512 core lands here
    flops, how = measured_cpu_peak(repeats=1)
    assert flops > 1e9 and how.startswith(f"measured fp32 {_ext.cpu_isa().upper()} FMA peak")
    with pytest.raises(ValueError, match="threads and iterations must be >= 1"):
        _ext.extension().fma_peak_gflops(0, 1)


def test_the_bf16_dot_peak_probe_runs_where_the_tier_and_cpu_have_it(cpu_tier):
    ext = _ext.extension()
    reason = ext.bf16_dot_unsupported_reason()
    if cpu_tier["name"] == "avx2":
        assert reason == "the avx2 tier has no bf16 dot-product probe"
    elif not _ext.cpu_features().get("avx512_bf16"):
        assert reason == "this CPU lacks avx512_bf16 (bf16 dot products)"
    if reason:
        with pytest.raises(RuntimeError, match="bf16 dot"):
            ext.bf16_dot_peak_gflops(1, 1000)
    else:
        assert ext.bf16_dot_peak_gflops(1, 2_000_000) > 1.0  # GFLOP/s


def test_the_int8_dot_peak_probe_runs_on_every_tier(cpu_tier):
    ext = _ext.extension()
    assert 1 < ext.int8_dot_peak_gops(1, 2_000_000) < 10_000  # GOP/s of one core
    with pytest.raises(ValueError, match="threads and iterations must be >= 1"):
        ext.int8_dot_peak_gops(1, 0)
