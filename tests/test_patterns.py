"""Recognition by structure: what is fused, what stays eager, and the reasons given."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import fastresnet
from fastresnet.nn import FusedAddReLU, FusedConv2d, FusedResidualBlock
from fastresnet.numerics import compare_to_reference

from conftest import calibrated, double_copy


class CifarBlock(nn.Module):
    """A residual block written another way: functional ReLU, shortcut as a Sequential."""

    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = out + self.shortcut(x)
        return F.relu(out)


class SqueezeExcite(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.fc = nn.Conv2d(c, c, 1)

    def forward(self, x):
        return x * torch.sigmoid(self.fc(x.mean((2, 3), keepdim=True)))


class SEBlock(CifarBlock):
    """Main branch ends in an SE scale: the add cannot go in a conv epilogue."""

    def __init__(self, c):
        super().__init__(c, c, 1)
        self.se = SqueezeExcite(c)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.se(self.bn2(self.conv2(out)))
        return F.relu(out + x)


class NotResidual(CifarBlock):
    """Same children as CifarBlock, but the forward scales before the ReLU: not a block."""

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out)) + self.shortcut(x)
        return F.relu(out * 0.5)


class Net(nn.Module):
    def __init__(self, *blocks):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)).mean((2, 3)))


def optimize_and_check(model, x=None):
    model = calibrated(model, image_size=16)
    x = torch.randn(2, 3, 16, 16) if x is None else x
    fast = fastresnet.optimize(model)
    with torch.no_grad():
        result = compare_to_reference(fast(x), model(x), double_copy(model)(x.double()), torch.float32)
    assert result.ok, result
    return fast, fastresnet.explain(fast).info


def test_block_recognised_by_dataflow_not_by_class_name():
    fast, info = optimize_and_check(Net(CifarBlock(8, 8, 1), CifarBlock(8, 8, 2)))
    blocks = [m for m in fast.modules() if isinstance(m, FusedResidualBlock)]
    assert len(blocks) == 2
    assert all(b.merge is None and b.last.relu for b in blocks)  # add+relu in the last conv's epilogue
    assert len(blocks[1].shortcut) == 1 and isinstance(blocks[1].shortcut[0], FusedConv2d)
    assert "conv+bn+add+relu" in {row.pattern for row in info.fused}
    assert info.eager == [row for row in info.eager if row.kind == "Linear"]


def test_se_block_uses_the_standalone_add_relu():
    fast, info = optimize_and_check(Net(SEBlock(8)))
    (block,) = [m for m in fast.modules() if isinstance(m, FusedResidualBlock)]
    assert isinstance(block.merge, FusedAddReLU)
    assert isinstance(block.last, SqueezeExcite)
    assert any(row.pattern == "add+relu" and row.op == "cpp_add_relu" for row in info.fused)


def test_block_with_a_different_forward_stays_eager_with_the_reason():
    fast, info = optimize_and_check(Net(NotResidual(8, 8, 1)))
    assert not any(isinstance(m, FusedResidualBlock) for m in fast.modules())
    # Its conv-bn(-relu) runs are still fused; what is left eager says why the block was not.
    assert any(row.replaces == ["blocks.0.conv1", "blocks.0.bn1"] for row in info.fused)
    (row,) = [row for row in info.eager if row.module == "blocks.0"]
    assert row.kind == "NotResidual"
    assert "its final ReLU follows call_function mul, not a residual add" in row.reason


@pytest.mark.filterwarnings("ignore:.*nothing in this model was recognised")
def test_unsupported_convs_stay_eager_with_reasons():
    class StdConv(nn.Conv2d):  # weight standardisation: a different forward
        def forward(self, x):
            w = (self.weight - self.weight.mean((1, 2, 3), keepdim=True)) / self.weight.std((1, 2, 3), keepdim=True)
            return F.conv2d(x, w, self.bias, self.stride, self.padding)

    model = nn.Sequential(
        StdConv(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect"),
        nn.BatchNorm2d(4, track_running_stats=False),
        nn.Conv2d(4, 4, 3, padding="same"),
    )
    fast, info = optimize_and_check(model)
    reasons = {row.module: row.reason for row in info.eager}
    assert "overrides Conv2d.forward" in reasons["0"]
    assert "padding_mode='reflect'" in reasons["2"]
    assert "no running statistics" in reasons["3"]
    assert "padding='same'" in reasons["4"]
    assert not any(isinstance(m, FusedConv2d) for m in fast.modules())


def test_untraceable_parent_still_gets_its_children_fused():
    class DataDependent(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), CifarBlock(8, 8, 1))
            self.conv = nn.Conv2d(8, 8, 1)
            self.bn = nn.BatchNorm2d(8)

        def forward(self, x):
            y = self.features(x)
            if y.sum() > 0:  # control flow on data: torch.fx cannot trace this
                y = self.bn(self.conv(y))
            return y

    fast, info = optimize_and_check(DataDependent())
    assert isinstance(fast.features[0], FusedConv2d) and isinstance(fast.features[3], FusedResidualBlock)
    reasons = {row.module: row.reason for row in info.eager}
    assert "cannot be traced by torch.fx" in reasons["conv"]


@pytest.mark.filterwarnings("ignore:.*nothing in this model was recognised")
def test_a_conv_called_twice_is_not_fused():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, padding=1)
            self.bn = nn.BatchNorm2d(3)

        def forward(self, x):
            return self.bn(self.conv(self.conv(x)))

    fast, info = optimize_and_check(Twice())
    assert {row.module: row.reason for row in info.eager}["conv"] == "it is called 2 times in one forward"


def test_a_shared_relu_is_not_replaced():
    relu = nn.ReLU()
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), relu, nn.Conv2d(4, 4, 3), relu)
    fast, info = optimize_and_check(model)
    # The ReLU module appears twice, so the convs that precede it are not fused with it.
    assert [r.pattern for r in info.fused] == ["conv+bn", "conv"]
    assert isinstance(fast[2], nn.ReLU) and isinstance(fast[4], nn.ReLU)


def test_a_single_block_as_the_whole_model():
    block = calibrated(CifarBlock(3, 8, 2), image_size=16)
    fast = fastresnet.optimize(block)
    assert isinstance(fast, FusedResidualBlock)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), block(x), atol=1e-5, rtol=1e-5)
    assert fastresnet.explain(fast).info.backend == "cpp-cpu"


def test_nothing_recognised_warns():
    with pytest.warns(UserWarning, match="nothing in this model was recognised"):
        fastresnet.optimize(nn.Sequential(nn.Linear(3, 3)).eval())


def test_modules_kept_inside_a_fused_block_are_rewritten_too():
    fast, info = optimize_and_check(Net(SEBlock(8)))
    (block,) = [m for m in fast.modules() if isinstance(m, FusedResidualBlock)]
    assert isinstance(block.last.fc, FusedConv2d)
    assert any(row.module == "blocks.0.last.fc" and row.pattern == "conv" for row in info.fused)
