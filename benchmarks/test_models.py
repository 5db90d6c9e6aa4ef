"""Whole-model inference time: eager torchvision against fastresnet, per backend.

Run:  .venv/bin/python -m pytest benchmarks -q
Each group is one model at batch 1, 224x224, float32, on the CPU with torch's default
thread count. Two views of the same candidates:

* test_model_latency: pytest-benchmark, one candidate after another (its usual tables,
  and --benchmark-json for machine-readable results);
* test_model_speedup: all candidates interleaved round by round, printed at the end of the
  run with p20/p50/p80 and the speedup over eager. Quote these ratios: they are measured
  side by side under the same machine noise.

FASTRESNET_BENCH_ROUNDS sets the number of timed rounds (default 20).
"""

import functools
import os

import pytest
import torch
import torchvision

import fastresnet
from fastresnet.bench import measure_interleaved
from fastresnet.bench.models import set_realistic_batchnorm_

from conftest import INTERLEAVED_RESULTS

ROUNDS = int(os.environ.get("FASTRESNET_BENCH_ROUNDS", "20"))
WARMUP = 3
MODELS = ["resnet18", "resnet50"]
CANDIDATES = ["eager", "fastresnet-reference"]


@functools.cache
def eager_model(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None)
    calibration = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    return set_realistic_batchnorm_(model, calibration).eval()


def candidate_model(name: str, candidate: str) -> torch.nn.Module:
    model = eager_model(name)
    if candidate == "eager":
        return model
    return fastresnet.optimize(model, backend=candidate.removeprefix("fastresnet-"))


def group(name: str) -> str:
    return f"{name} batch 1 224x224 float32 cpu"


def assert_same_answer(out: torch.Tensor, expected: torch.Tensor) -> None:
    """A benchmark of wrong answers is worthless: check before reporting."""
    torch.testing.assert_close(out, expected, atol=1e-4 * expected.abs().max().item(), rtol=0)


@pytest.mark.parametrize("candidate", CANDIDATES)
@pytest.mark.parametrize("name", MODELS)
def test_model_latency(benchmark, name, candidate):
    model = candidate_model(name, candidate)
    x = torch.randn(1, 3, 224, 224)
    benchmark.group = group(name)
    benchmark.extra_info.update(model=name, candidate=candidate, threads=torch.get_num_threads())
    with torch.inference_mode():
        out = benchmark.pedantic(model, args=(x,), rounds=ROUNDS, warmup_rounds=WARMUP, iterations=1)
        assert_same_answer(out, eager_model(name)(x))


@pytest.mark.parametrize("name", MODELS)
def test_model_speedup(name):
    x = torch.randn(1, 3, 224, 224)
    models = {candidate: candidate_model(name, candidate) for candidate in CANDIDATES}
    with torch.inference_mode():
        expected = models["eager"](x)
        for model in models.values():
            assert_same_answer(model(x), expected)
        samples = measure_interleaved({c: functools.partial(m, x) for c, m in models.items()}, ROUNDS, WARMUP)
    for candidate, s in samples.items():
        INTERLEAVED_RESULTS.append((group(name), candidate, s, samples["eager"].p50 / s.p50))
