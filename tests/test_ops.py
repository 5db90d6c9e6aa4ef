"""The fused ops: opcheck, numerics against float64 per dtype, and argument errors."""

import pytest
import torch
import torch.nn.functional as F

from conv_cases import CONV_CASES, conv_args, conv_reference64
from fastresnet.ops import reference
from fastresnet.numerics import OP_TOLERANCES, op_mismatch

OPS = reference.register()
DTYPES = [torch.float32, torch.float16, torch.bfloat16]

@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("residual,relu", [(True, True), (False, True), (False, False), (True, False)])
def test_conv2d_bias_act_matches_float64(case, residual, relu):
    for dtype in DTYPES:
        args = conv_args(case, dtype, residual, relu)
        out = OPS.conv2d_bias_act(*args)
        tol = OP_TOLERANCES[dtype]
        assert out.dtype == dtype
        assert op_mismatch(out, conv_reference64(*args), tol) is None


@pytest.mark.parametrize("case", CONV_CASES[:3] + CONV_CASES[5:6])
@pytest.mark.parametrize("channels_last", [False, True])
def test_conv2d_bias_act_opcheck(case, channels_last):
    torch.library.opcheck(OPS.conv2d_bias_act, conv_args(case, channels_last=channels_last))
    torch.library.opcheck(OPS.conv2d_bias_act, conv_args(case, residual=False, channels_last=channels_last))


def test_conv2d_bias_act_keeps_channels_last():
    out = OPS.conv2d_bias_act(*conv_args(CONV_CASES[1], channels_last=True))
    assert out.is_contiguous(memory_format=torch.channels_last)
    out = OPS.conv2d_bias_act(*conv_args(CONV_CASES[1]))
    assert out.is_contiguous()


@pytest.mark.parametrize("dtype", DTYPES)
def test_add_relu(dtype):
    a, b = torch.randn(2, 5, 3, 7, dtype=dtype), torch.randn(2, 5, 3, 7, dtype=dtype)
    expected = (a.double() + b.double()).relu()
    tol = OP_TOLERANCES[dtype]
    assert op_mismatch(OPS.add_relu(a, b), expected, tol) is None
    torch.library.opcheck(OPS.add_relu, (a, b))
    torch.library.opcheck(OPS.add_relu, (a.to(memory_format=torch.channels_last), b))


@pytest.mark.parametrize("ceil_mode", [False, True])
@pytest.mark.parametrize("shape", [(2, 4, 16, 16), (1, 3, 9, 7), (2, 2, 1, 1)])
def test_max_pool2d(shape, ceil_mode):
    x = torch.randn(shape)
    args = (x, [3, 3], [2, 2], [1, 1], [1, 1], ceil_mode)
    torch.testing.assert_close(OPS.max_pool2d(*args), F.max_pool2d(x, 3, 2, 1, 1, ceil_mode), atol=0, rtol=0)
    torch.library.opcheck(OPS.max_pool2d, args)
    torch.library.opcheck(OPS.max_pool2d, (x.to(memory_format=torch.channels_last), *args[1:]))


@pytest.mark.parametrize("dtype", DTYPES)
def test_global_avg_pool(dtype):
    x = torch.randn(3, 6, 7, 5).to(dtype)
    tol = OP_TOLERANCES[dtype]
    out = OPS.global_avg_pool(x)
    assert out.shape == (3, 6)
    assert op_mismatch(out, x.double().mean((2, 3)), tol) is None
    torch.library.opcheck(OPS.global_avg_pool, (x,))
    torch.library.opcheck(OPS.global_avg_pool, (x.to(memory_format=torch.channels_last),))


def test_nan_and_inf_propagate_through_the_conv():
    x, weight, bias, res, *rest = conv_args(CONV_CASES[1], residual=True, relu=True)
    x[0, 0, 4, 4] = float("nan")
    res[1, 0, 0, 0] = float("inf")
    out = OPS.conv2d_bias_act(x, weight, bias, res, *rest)
    expected = conv_reference64(x, weight, bias, res, *rest)
    assert torch.equal(out.isnan(), expected.isnan())
    assert torch.equal(out.isinf(), expected.isinf())
    assert out.isnan().any() and out.isinf().any()


@pytest.mark.parametrize(
    "mutate,error,message",
    [
        (lambda a: a.update(x=a["x"][0]), ValueError, r"expected a 4-D input \(N, C, H, W\), got a 3-D"),
        (lambda a: a.update(x=a["x"][:, :3]), ValueError, "expected 8 input channels"),
        (lambda a: a.update(x=a["x"].double()), TypeError, "expected dtype torch.float32, got torch.float64"),
        (lambda a: a.update(x=a["x"].to(torch.int32)), TypeError, "got torch.int32"),
        (lambda a: a.update(res=a["res"][:, :, :2]), ValueError, "expected a residual of the output's shape"),
        (lambda a: a.update(res=a["res"].half()), TypeError, "expected a residual of dtype torch.float32"),
        (lambda a: a.update(bias=a["bias"][:3]), ValueError, r"expected a bias of shape \(8,\)"),
        (lambda a: a.update(groups=3), ValueError, "groups=3 must be >= 1 and divide C_out=8"),
        (lambda a: a.update(stride=[0, 1]), ValueError, "expected stride as two integers >= 1"),
        (lambda a: a.update(x=torch.randn(2, 8, 1, 1), padding=[0, 0], res=None), ValueError, "too small"),
    ],
)
def test_conv2d_bias_act_rejects_bad_arguments(mutate, error, message):
    x, weight, bias, res, stride, padding, dilation, groups, relu = conv_args(CONV_CASES[1])
    a = dict(x=x, weight=weight, bias=bias, res=res, stride=stride, padding=padding, groups=groups)
    mutate(a)
    args = (a["x"], weight, a["bias"], a["res"], a["stride"], a["padding"], dilation, a["groups"], relu)
    with pytest.raises(error, match=message):
        OPS.conv2d_bias_act(*args)
    # The fake implementation raises the same error, so compiled graphs fail the same way.
    with torch._subclasses.fake_tensor.FakeTensorMode(allow_non_fake_inputs=True), pytest.raises(error, match=message):
        OPS.conv2d_bias_act(*args)


def test_pool_ops_reject_bad_arguments():
    with pytest.raises(ValueError, match="padding .* must be at most half of kernel_size"):
        OPS.max_pool2d(torch.randn(1, 2, 8, 8), [3, 3], [2, 2], [2, 2], [1, 1], False)
    with pytest.raises(TypeError, match="floating-point"):
        OPS.global_avg_pool(torch.ones(1, 2, 3, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match="4-D input"):
        OPS.add_relu(torch.randn(3, 4), torch.randn(3, 4))
