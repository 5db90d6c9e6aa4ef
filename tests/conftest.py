import copy
import os

import pytest
import torch

if not torch.cuda.is_available():
    # No GPU: the Triton kernels are tested through Triton's interpreter, on CPU tensors.
    # Set before anything imports them: triton.jit reads it when a kernel is defined.
    os.environ.setdefault("TRITON_INTERPRET", "1")
import torchvision
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

from fastresnet.bench.models import set_realistic_batchnorm_


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def answers_on_thread_counts(call, counts=(1, 2, 3)) -> list:
    """``call()``'s answer with torch set to each thread count in turn; the count restored after."""
    threads = torch.get_num_threads()
    try:
        answers = []
        for n in counts:
            torch.set_num_threads(n)
            answers.append(call())
    finally:
        torch.set_num_threads(threads)
    return answers


def calibrated(model: nn.Module, image_size: int = 64, seed: int = 0) -> nn.Module:
    """``model`` in eval mode with non-trivial BN statistics measured on random images."""
    inputs = torch.randn(4, 3, image_size, image_size, generator=torch.Generator().manual_seed(seed + 1))
    return set_realistic_batchnorm_(model, inputs, seed=seed).eval()


def freeze_batchnorm(model: nn.Module) -> nn.Module:
    """Replace every BatchNorm2d by a FrozenBatchNorm2d holding the same statistics."""
    for name, child in list(model.named_children()):
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            for key in ("weight", "bias", "running_mean", "running_var"):
                getattr(frozen, key).copy_(getattr(child, key))
            setattr(model, name, frozen)
        else:
            freeze_batchnorm(child)
    return model


def snapshot(model: nn.Module) -> tuple:
    """Everything that optimize() must not change in the user's model."""
    state = {k: v.clone() for k, v in model.state_dict().items()}
    structure = [(name, type(m)) for name, m in model.named_modules()]
    return state, structure, model.training


def assert_unchanged(model: nn.Module, before: tuple) -> None:
    state, structure, training = snapshot(model)
    assert structure == before[1]
    assert training == before[2]
    assert state.keys() == before[0].keys()
    for key in state:
        assert torch.equal(state[key], before[0][key]), key


def double_copy(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model).double()


@pytest.fixture
def tiny_resnet():
    """A one-block-per-stage ResNet: every pattern of resnet18, fast to run and compile."""
    model = torchvision.models.resnet.ResNet(torchvision.models.resnet.BasicBlock, [1, 1, 1, 1], num_classes=10)
    return calibrated(model, image_size=32)


# The C++ CPU kernels' instruction-set tiers, widest first: every one the machine runs gets
# the kernel tests; one it lacks is skipped with the reason.
CPU_TIERS = ("avx512bf16", "avx512vnni", "avx512", "avx2")


@pytest.fixture(params=CPU_TIERS)
def cpu_tier(request):
    """Makes each CPU tier the active one in turn; yields its _ext.cpu_tiers() entry."""
    from fastresnet import _ext

    tiers = {t["name"]: t for t in _ext.cpu_tiers()}
    name = request.param
    if name not in tiers:
        pytest.skip(f"the {name} tier is not compiled in this build (built for another architecture)")
    if tiers[name]["unsupported_reason"]:
        pytest.skip(tiers[name]["unsupported_reason"])
    _ext.set_cpu_isa(name)  # the extension's own switch; None returns to its choice at load
    try:
        yield tiers[name]
    finally:
        _ext.set_cpu_isa(None)
