"""Whole-model parity with eager torchvision, against a float64 reference."""

import copy

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models import resnet
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone

import fastresnet
from fastresnet.nn import FusedConv2d, FusedResidualBlock
from fastresnet.numerics import compare_to_reference, no_tf32

from conftest import assert_unchanged, calibrated, double_copy, freeze_batchnorm, snapshot

MODELS = {
    "resnet18": lambda: resnet.resnet18(num_classes=100),
    "resnet34": lambda: resnet.resnet34(num_classes=100),
    "resnet50": lambda: resnet.resnet50(),
    "resnet101": lambda: resnet.resnet101(num_classes=10),
    "resnet152": lambda: resnet.resnet152(num_classes=10),
    "wide_resnet50_2": lambda: resnet.wide_resnet50_2(num_classes=10),
    "resnext50_32x4d": lambda: resnet.resnext50_32x4d(num_classes=10),
    "resnet50_dilated": lambda: resnet.resnet50(num_classes=10, replace_stride_with_dilation=[False, True, True]),
}
BLOCKS = {"resnet18": 8, "resnet34": 16, "resnet50": 16, "resnet101": 33, "resnet152": 50}


def run_parity(model: nn.Module, x: torch.Tensor, dtype: torch.dtype = torch.float32, **kwargs):
    """Optimize ``model``, check it against float64 and the original, return both outputs."""
    before = snapshot(model)
    fast = fastresnet.optimize(model, dtype=dtype, **kwargs)
    assert_unchanged(model, before)
    eager_lowp = copy.deepcopy(model).to(dtype)
    with torch.no_grad(), no_tf32():
        ref64 = double_copy(model)(x.double())
        fused = fast(x.to(dtype))
        eager = eager_lowp(x.to(dtype))
    result = compare_to_reference(fused, eager, ref64, dtype)
    assert result.ok, result
    return fast, fused, ref64, result


def assert_same_top1(fused: torch.Tensor, ref64: torch.Tensor, tolerance: float) -> None:
    """Top-1 must agree wherever the reference is decisive (margin above the tolerance)."""
    top2 = ref64.topk(2, dim=1).values
    decisive = (top2[:, 0] - top2[:, 1]) > 2 * tolerance
    assert decisive.any(), "no decisive sample: the test would prove nothing"
    assert torch.equal(fused.argmax(1)[decisive], ref64.argmax(1)[decisive])


@pytest.mark.parametrize("name", list(MODELS))
def test_classifier_parity_fp32_cpu_kernels(name, cpu_tier):
    """The C++ CPU kernels, on every tier this CPU runs."""
    fast = check_classifier_parity_fp32(name, "cpp-cpu")
    assert {m.cpu_tier for m in fast.modules() if isinstance(m, FusedConv2d)} == {cpu_tier["name"]}


@pytest.mark.parametrize("name", list(MODELS))
def test_classifier_parity_fp32_reference(name):
    check_classifier_parity_fp32(name, "reference")


def check_classifier_parity_fp32(name: str, backend: str) -> nn.Module:
    model = calibrated(MODELS[name]())
    x = torch.randn(2, 3, 64, 64)
    fast, fused, ref64, result = run_parity(model, x, backend=backend)
    assert fastresnet.explain(fast).info.backend == backend
    assert fused.shape == ref64.shape
    assert_same_top1(fused, ref64, result.bound)
    # Every conv and BN was fused: nothing of the kind runs eagerly.
    leftovers = [n for n, m in fast.named_modules() if isinstance(m, (nn.Conv2d, nn.BatchNorm2d))]
    assert leftovers == []
    blocks = sum(isinstance(m, FusedResidualBlock) for m in fast.modules())
    assert blocks == BLOCKS.get(name, 16)
    return fast


def test_direct_convs_only_parity(monkeypatch, cpu_tier):
    """FASTRESNET_WINOGRAD=0: every 3x3 conv of the CPU kernels runs directly."""
    monkeypatch.setenv("FASTRESNET_WINOGRAD", "0")
    fast, *_ = run_parity(calibrated(MODELS["resnet34"]()), torch.randn(2, 3, 64, 64), backend="cpp-cpu")
    assert {m.algorithm for m in fast.modules() if hasattr(m, "algorithm")} == {"direct"}


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_resnet50_parity_low_precision(dtype):
    model = calibrated(resnet.resnet50(num_classes=10))
    run_parity(model, torch.randn(2, 3, 64, 64), dtype=dtype)


def test_frozen_batchnorm_detection_backbone():
    """The body of a detection backbone built on FrozenBatchNorm2d, inside an FPN."""
    backbone = resnet_fpn_backbone(backbone_name="resnet50", weights=None, trainable_layers=5)
    body = resnet.resnet50()
    calibrated(body)
    freeze_batchnorm(body)
    backbone.body.load_state_dict(body.state_dict(), strict=False)
    backbone.eval()
    assert any(isinstance(m, torchvision.ops.misc.FrozenBatchNorm2d) for m in backbone.modules())
    fast, fused, ref64, _ = run_parity(backbone, torch.randn(2, 3, 64, 64))
    assert list(fused) == list(ref64)  # the same feature maps, by name
    assert sum(isinstance(m, FusedResidualBlock) for m in fast.modules()) == 16
    frozen_left = [n for n, m in fast.named_modules() if isinstance(m, torchvision.ops.misc.FrozenBatchNorm2d)]
    assert frozen_left == []


def test_segmentation_model_with_dilated_backbone():
    """DeepLabV3: a dilated ResNet-50 nested in a segmentation model with an ASPP head."""
    model = torchvision.models.segmentation.deeplabv3_resnet50(
        weights=None, weights_backbone=None, num_classes=5, aux_loss=False
    )
    model = calibrated(model)
    fast, fused, ref64, _ = run_parity(model, torch.randn(2, 3, 64, 64))
    assert fused["out"].shape == (2, 5, 64, 64)
    assert sum(isinstance(m, FusedResidualBlock) for m in fast.modules()) == 16


def test_inplace_rewrites_the_given_model(tiny_resnet):
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = tiny_resnet(x)
    fast = fastresnet.optimize(tiny_resnet, inplace=True)
    assert fast is tiny_resnet
    assert isinstance(tiny_resnet.layer1[0], FusedResidualBlock)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), expected, atol=1e-5, rtol=1e-5)
