"""BN folding: conv followed by BN equals the folded conv, computed in float64."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

from fastresnet.rewrite.fold_bn import NotFoldable, fold_conv_bn


def random_bn(bn: nn.Module) -> nn.Module:
    n = bn.num_features if hasattr(bn, "num_features") else bn.running_mean.numel()
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(n))
        bn.running_var.copy_(torch.rand(n) * 2 + 0.05)
        if bn.weight is not None:
            bn.weight.copy_(torch.rand(n) + 0.5)
            bn.bias.copy_(torch.randn(n) * 0.3)
    return bn.eval()


def folded_output(conv, bn, x, dtype=torch.float64):
    weight, bias = fold_conv_bn(conv, bn, dtype)
    return F.conv2d(x.to(dtype), weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)


@pytest.mark.parametrize("conv_bias", [False, True])
@pytest.mark.parametrize("eps", [1e-5, 1e-3, 0.1])
@pytest.mark.parametrize("groups", [1, 4])
def test_fold_matches_conv_then_bn(conv_bias, eps, groups):
    conv = nn.Conv2d(8, 12, 3, stride=2, padding=1, groups=groups, bias=conv_bias).double()
    bn = random_bn(nn.BatchNorm2d(12, eps=eps).double())
    x = torch.randn(2, 8, 9, 9, dtype=torch.float64)
    with torch.no_grad():
        expected = bn(conv(x))
    torch.testing.assert_close(folded_output(conv, bn, x), expected, rtol=1e-12, atol=1e-12)


def test_fold_without_affine_parameters():
    conv = nn.Conv2d(3, 5, 1).double()
    bn = random_bn(nn.BatchNorm2d(5, affine=False).double())
    x = torch.randn(1, 3, 4, 4, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(folded_output(conv, bn, x), bn(conv(x)), rtol=1e-12, atol=1e-12)


def test_fold_frozen_batchnorm():
    conv = nn.Conv2d(4, 6, 3, padding=1, bias=False).double()
    bn = random_bn(FrozenBatchNorm2d(6, eps=1e-3)).double()
    x = torch.randn(2, 4, 5, 5, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(folded_output(conv, bn, x), bn(conv(x)), rtol=1e-12, atol=1e-12)


def test_conv_without_bn_gets_a_zero_bias():
    conv = nn.Conv2d(3, 4, 3, bias=False)
    weight, bias = fold_conv_bn(conv, None, torch.float32)
    assert torch.equal(weight, conv.weight.detach())
    assert torch.equal(bias, torch.zeros(4))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_fold_is_computed_in_float64_and_cast_once(dtype):
    conv = nn.Conv2d(16, 32, 3)
    bn = random_bn(nn.BatchNorm2d(32, eps=1e-5))
    weight, bias = fold_conv_bn(conv, bn, dtype)
    weight64, bias64 = fold_conv_bn(conv, bn, torch.float64)
    assert weight.dtype == bias.dtype == dtype
    assert torch.equal(weight, weight64.to(dtype))
    assert torch.equal(bias, bias64.to(dtype))


def test_fold_does_not_modify_the_modules():
    conv = nn.Conv2d(3, 4, 3)
    bn = random_bn(nn.BatchNorm2d(4))
    before = [t.clone() for t in (*conv.state_dict().values(), *bn.state_dict().values())]
    fold_conv_bn(conv, bn, torch.float32)
    after = [*conv.state_dict().values(), *bn.state_dict().values()]
    assert all(torch.equal(a, b) for a, b in zip(before, after))


def test_batchnorm_without_running_stats_is_not_foldable():
    conv = nn.Conv2d(3, 4, 3)
    bn = nn.BatchNorm2d(4, track_running_stats=False).eval()
    with pytest.raises(NotFoldable, match="no running statistics"):
        fold_conv_bn(conv, bn, torch.float32)


def test_training_batchnorm_is_not_foldable():
    with pytest.raises(NotFoldable, match=r"model\.eval\(\)"):
        fold_conv_bn(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4).train(), torch.float32)


def test_feature_count_mismatch_is_not_foldable():
    with pytest.raises(NotFoldable, match="5 features but the conv has 4 output channels"):
        fold_conv_bn(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(5).eval(), torch.float32)
