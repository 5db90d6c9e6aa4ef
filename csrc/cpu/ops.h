// What fastresnet.cpp exposes to Python from the CPU kernels.
#pragma once

#include <ATen/ATen.h>

#include <string>

namespace fastresnet::cpu {

// The name of a conv weight's logical layout (C_out, C_in/groups, KH, KW).
constexpr const char* kLogicalLayout = "oihw";

// Why the CPU kernels cannot run on this CPU (no tier runs here), or "" if they can.
std::string unsupported_reason();

// A conv weight (C_out, C_in/groups, KH, KW) in the named layout:
//   "oihw"                 unchanged (the kernels then block it per call, for the active tier);
//   "<tier>:blocked"       (groups, ceil(C_out/groups/B), KH, KW, C_in/groups, B), output
//                          channels zero-padded to whole blocks, B the tier's block;
//   "<tier>:winograd2x2"   G g G^T for F(2x2, 3x3), computed in float64: (4, 4, C_out/B, C_in, B);
//   "<tier>:winograd4x4"   the same for F(4x4, 3x3): (6, 6, C_out/B, C_in, B).
// The tier must run on this CPU.
at::Tensor pack_conv_weight(const at::Tensor& weight, int64_t groups, const std::string& layout);

}  // namespace fastresnet::cpu
