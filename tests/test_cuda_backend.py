"""The CUDA C++ kernels of the cpp-cuda backend (csrc/cuda).

Here, without a GPU: every .cu compiles for sm_80 and sm_90, half-precision convs use tensor
cores (HMMA in the SASS), no kernel spills, the extension is built with them, and the
dispatcher links them to the Python-defined schemas. On a GPU machine the marked tests also
check them against float64 and eager; without one they are skipped with the reason.
"""

import shutil

import pytest
import torch
from torchvision.models import resnet

import fastresnet
from conv_cases import CONV_CASES, conv_args, conv_reference64
from cuda_compile import compile_all, short_name
from fastresnet import _ext
from fastresnet.backends import BACKENDS
from fastresnet.numerics import OP_TOLERANCES, compare_to_reference, no_tf32, op_mismatch
from fastresnet.ops import kernel_missing

from conftest import calibrated, double_copy

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU to run the kernels")


@pytest.fixture(scope="module")
def kernels():
    return compile_all()


def test_every_cuda_source_compiles_for_sm80_and_sm90(kernels):
    by_arch = {arch: {short_name(k.name) for k in kernels if k.arch == arch} for arch in (80, 90)}
    assert by_arch[80] == by_arch[90]
    names = " ".join(by_arch[80])
    for kernel in ("conv_wmma_kernel<__half>", "conv_wmma_kernel<__nv_bfloat16>", "conv_fp32_kernel"):
        assert kernel in names
    for kernel in ("max_pool2d_kernel", "global_avg_pool_kernel", "add_relu_kernel"):
        assert names.count(kernel) == 3  # float, half, bfloat16


def test_half_precision_convs_use_tensor_cores(kernels):
    for k in kernels:
        if "conv_wmma_kernel" in k.name:
            assert k.hmma > 0, f"{k.name} on sm_{k.arch} has no HMMA instruction"
        else:
            assert k.hmma == 0, f"{k.name}: an fp32 or pooling kernel should not use tensor cores"


def test_no_kernel_spills_registers(kernels):
    assert [(short_name(k.name), k.arch, k.spill_bytes) for k in kernels if k.spill_bytes] == []


def test_extension_is_built_with_the_cuda_kernels():
    if torch.version.cuda is None or shutil.which("nvcc") is None:
        pytest.fail("this machine should build the CUDA kernels: torch is a CUDA build and nvcc is installed")
    info = _ext.build_info()
    assert info["cuda"] is True


def test_cuda_kernels_are_registered_for_every_op_of_the_cpp_schemas():
    BACKENDS["cpp-cuda"].ops()
    assert kernel_missing("cpp", "CUDA") == []


def test_without_a_gpu_the_cuda_backends_say_why():
    if torch.cuda.is_available():
        pytest.skip("checks the message on machines without a GPU")
    statuses = {s.name: s for s in fastresnet.available_backends("cuda")}
    assert statuses["cpp-cuda"].reasons == ("CUDA is not available",)
    assert statuses["triton"].reasons and not statuses["reference"].available


# -- on a GPU -------------------------------------------------------------------------------


@needs_gpu
@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_matches_float64_on_gpu(case):
    ops = BACKENDS["cpp-cuda"].ops()
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        for channels_last in (True, False):
            args = conv_args(case, dtype, True, True, channels_last, "cuda")
            tol = OP_TOLERANCES[dtype]
            with no_tf32():
                out = ops.conv2d_bias_act(*args)
            assert op_mismatch(out, conv_reference64(*args), tol) is None


@needs_gpu
def test_pools_and_add_relu_on_gpu():
    ops = BACKENDS["cpp-cuda"].ops()
    x = torch.randn(2, 5, 13, 11, device="cuda").to(memory_format=torch.channels_last)
    x[0, 1, 2, 2] = float("nan")
    out = ops.max_pool2d(x, [3, 3], [2, 2], [1, 1], [1, 1], True)
    expected = torch.nn.functional.max_pool2d(x, 3, 2, 1, 1, True)
    torch.testing.assert_close(out, expected, equal_nan=True, atol=0, rtol=0)
    clean = x.nan_to_num()
    torch.testing.assert_close(ops.global_avg_pool(clean), clean.mean((2, 3)), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ops.add_relu(clean, clean.flip(0)), (clean + clean.flip(0)).relu())


@needs_gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_resnet50_parity_on_gpu(dtype):
    model = calibrated(resnet.resnet50(), image_size=64).cuda()
    fast = fastresnet.optimize(model, backend="cpp-cuda", dtype=dtype)
    x = torch.randn(4, 3, 224, 224, device="cuda")
    with torch.no_grad(), no_tf32():
        eager = double_copy(model).to(dtype)(x.to(dtype))
        result = compare_to_reference(fast(x.to(dtype)), eager, double_copy(model)(x.double()), dtype)
    assert result.ok, result


@needs_gpu
def test_auto_falls_back_to_cuda_cpp_when_triton_is_disabled(monkeypatch):
    monkeypatch.setenv("FASTRESNET_DISABLE_TRITON", "1")
    fast = fastresnet.optimize(calibrated(resnet.resnet18()).cuda())
    info = fastresnet.explain(fast).info
    assert info.backend == "cpp-cuda"
    assert any("auto skipped triton: disabled by FASTRESNET_DISABLE_TRITON=1" in note for note in info.notes)
