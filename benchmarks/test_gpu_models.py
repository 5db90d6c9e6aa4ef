"""ResNet-50 on a CUDA GPU: eager (cuDNN), eager fp16 channels_last, torch.compile
max-autotune and fastresnet (Triton, and the CUDA C++ kernels of the cpp backend),
interleaved, at batch 1, 32 and 256, 224x224.

Run on a GPU machine:  .venv/bin/python -m pytest benchmarks/test_gpu_models.py -q
Without a GPU every case is skipped: there is nothing to measure.
"""

import functools

import pytest
import torch
import torchvision

import fastresnet
from fastresnet.bench import measure_interleaved
from fastresnet.bench.models import set_realistic_batchnorm_

from conftest import INTERLEAVED_RESULTS

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@functools.cache
def resnet50_fp32() -> torch.nn.Module:
    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None)
    set_realistic_batchnorm_(model, torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(1)))
    return model.eval().cuda()


def candidates(batch: int) -> dict:
    model = resnet50_fp32()
    x32 = torch.randn(batch, 3, 224, 224, device="cuda")
    x16 = x32.half().to(memory_format=torch.channels_last)
    eager_half = torchvision.models.resnet50(weights=None).cuda().eval()
    eager_half.load_state_dict(model.state_dict())
    eager_half = eager_half.half().to(memory_format=torch.channels_last)
    compiled = torch.compile(eager_half, mode="max-autotune")
    fast = fastresnet.optimize(model, backend="triton", dtype=torch.float16)
    fast_cpp = fastresnet.optimize(model, backend="cpp-cuda", dtype=torch.float16)
    return {
        "eager fp32": functools.partial(model, x32),
        "eager fp16 channels_last": functools.partial(eager_half, x16),
        "torch.compile max-autotune fp16": functools.partial(compiled, x16),
        "fastresnet triton fp16": functools.partial(fast, x16),
        "fastresnet cpp (CUDA C++) fp16": functools.partial(fast_cpp, x16),
    }


@pytest.mark.parametrize("batch", [1, 32, 256])
def test_resnet50_gpu(batch):
    runs = candidates(batch)
    with torch.inference_mode():
        samples = measure_interleaved(runs, rounds=30, warmup=5)
    group = f"resnet50 batch {batch} 224x224 {torch.cuda.get_device_name()}"
    base = samples["eager fp32"].p50
    for name, s in samples.items():
        INTERLEAVED_RESULTS.append((group, name, s, base / s.p50))
