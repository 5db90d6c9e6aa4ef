// What fastresnet.cpp exposes to Python from the CPU kernels.
#pragma once

#include <ATen/ATen.h>

#include <string>

namespace fastresnet::cpu {

// Why the CPU kernels cannot run on this CPU, or "" if they can.
std::string unsupported_reason();

// (C_out, C_in/groups, KH, KW) -> (groups, ceil(C_out/groups/16), KH, KW, C_in/groups, 16),
// output channels zero-padded to whole blocks: the layout the conv kernel reads.
at::Tensor block_conv_weight(const at::Tensor& weight, int64_t groups);

// A 3x3 weight (C_out, C_in, 3, 3), C_out a multiple of 16, transformed for Winograd
// F(2x2, 3x3) (G g G^T, computed in float64): (4, 4, C_out/16, C_in, 16).
at::Tensor winograd_conv_weight(const at::Tensor& weight);

}  // namespace fastresnet::cpu
