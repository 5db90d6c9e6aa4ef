"""Conv test cases shared by the reference and Triton kernel tests."""

import torch
import torch.nn.functional as F

# (C_in, C_out, kernel, stride, padding, dilation, groups, H, W): the conv shape classes of
# the ResNet family, at small sizes, with odd sizes and channel counts.
CONV_CASES = [
    (3, 8, 7, 2, 3, 1, 1, 17, 15),  # stem 7x7/s2
    (8, 8, 3, 1, 1, 1, 1, 9, 9),  # 3x3/s1
    (6, 10, 3, 2, 1, 1, 1, 9, 8),  # 3x3/s2
    (8, 12, 1, 1, 0, 1, 1, 5, 7),  # 1x1/s1
    (8, 12, 1, 2, 0, 1, 1, 7, 7),  # 1x1/s2 (downsample)
    (16, 16, 3, 1, 1, 1, 8, 6, 6),  # grouped (ResNeXt)
    (5, 7, 3, 1, 2, 2, 1, 9, 9),  # dilation 2
    (5, 7, 3, 1, 4, 4, 1, 11, 10),  # dilation 4
    (4, 4, 3, 1, 1, 1, 1, 1, 1),  # 1x1 spatial
]


def conv_args(case, dtype=torch.float32, residual=True, relu=True, channels_last=False, device="cpu"):
    c_in, c_out, k, s, p, d, g, h, w = case
    x = torch.randn(2, c_in, h, w)
    weight = torch.randn(c_out, c_in // g, k, k) / (c_in // g * k * k) ** 0.5
    bias = torch.randn(c_out)
    out_h = (h + 2 * p - d * (k - 1) - 1) // s + 1
    out_w = (w + 2 * p - d * (k - 1) - 1) // s + 1
    res = torch.randn(2, c_out, out_h, out_w) if residual else None
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
        res = res.to(memory_format=torch.channels_last) if res is not None else None
    cast = (lambda t: t.to(device, dtype) if t is not None else None)
    return cast(x), cast(weight), cast(bias), cast(res), [s, s], [p, p], [d, d], g, relu


def conv_reference64(x, weight, bias, res, stride, padding, dilation, groups, relu):
    out = F.conv2d(x.double(), weight.double(), bias.double(), stride, padding, dilation, groups)
    if res is not None:
        out = out + res.double()
    return out.relu() if relu else out
