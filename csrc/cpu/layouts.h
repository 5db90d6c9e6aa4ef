// Named conv weight layouts of the CPU kernels: what a fused conv's weight tensor holds, said
// by name, with everything about each layout in one place (its tier and algorithm, packed
// shape, packing and unpacking). Layouts are made once per compiled tier when first asked;
// an op call looks its layout up by name. Names:
//   "oihw"                the logical weight (C_out, C_in/groups, KH, KW), any memory format:
//                         every backend reads it (the CPU kernels block it per call);
//   "<tier>:blocked"      the direct conv's: (groups, ceil(C_out/groups/B), KH, KW,
//                         C_in/groups, B), B = the tier's block, output channels zero-padded;
//   "<tier>:winograd2x2"  U = G g G^T of F(2x2, 3x3), in float64 then cast: (4, 4, C_out/B, C_in, B);
//   "<tier>:winograd4x4"  the same for F(4x4, 3x3): (6, 6, C_out/B, C_in, B);
//   "<tier>:blocked-bf16" the direct conv's in bfloat16, for tiers with bf16 dot products: the
//                         blocked layout with the reduction's steps paired, (groups,
//                         ceil(C_out/groups/B), KH, KW, C_in/groups / 2, B, 2), rounded once
//                         from the float64 fold;
//   "<tier>:blocked-bf16-padded"  the same for odd C_in/groups, with one zero input channel
//                         appended per group (the op appends one to the input too);
//   "<tier>:blocked-bf16-widened"  the direct conv's in bfloat16 for tiers without (they
//                         widen bf16 to fp32: CpuTier::bf16_widens): the blocked layout with the
//                         block's two vectors paired instead, (groups, ceil(C_out/groups/B),
//                         KH, KW, C_in/groups, B/2, 2): channels j and j + B/2 side by side;
//   "<tier>:int8-blocked" the int8 conv's, C_in/groups zero-padded to C4, a multiple of 4
//                         (the op pads the input alike), B = the kernels' block, packed as
//                         the tier's CpuTier::int8 kernels say: kWidenedPairs (vec_int8_avx2.h),
//                         the int8 weight widened to int16, (groups, ceil(C_out/groups/B), KH,
//                         KW, C4/4, 2, B, 2): for each 4 reduction steps, the even steps' pair
//                         (0, 2) of every output channel side by side, then the odd (1, 3);
//                         kQuads (vec_int8_avx512vnni.h), int8, (groups, ceil(C_out/groups/B),
//                         KH, KW, C4/4, B, 4): each output channel's 4 steps side by side;
//   "<tier>:int8-7bit"    the same for the tier's CpuTier::int8_narrow kernels, where it has
//                         them (AVX2's VPMADDUBSW): weights in -64..64 only, kQuads.
#pragma once

#include <ATen/ATen.h>

#include <array>
#include <string>
#include <vector>

#include "kernels.h"

namespace fastresnet::cpu {

constexpr const char* kLogicalLayout = "oihw";

struct WeightLayout {
  enum Kind { kLogical, kBlocked, kWinograd, kBlockedBf16, kBlockedBf16Widened, kInt8Blocked };
  std::string name;
  Kind kind;
  const CpuTier* tier;  // the kernels that read it; null for the logical layout
  int64_t m;            // Winograd output tile (2 or 4); 0 otherwise
  int64_t pad_in;       // zero input channels appended per group: 1 for blocked-bf16-padded
  const Int8Kernels* int8 = nullptr;  // the int8 layouts' kernels: the tier's int8 or int8_narrow

  // The weight's dtype: bf16 for the blocked-bf16 layouts, int16 or int8 for the int8 ones
  // (their kernels' Int8Packing), else float32 (the logical layout takes any).
  at::ScalarType dtype() const {
    if (kind == kInt8Blocked) return int8->packing == Int8Packing::kQuads ? at::kChar : at::kShort;
    return kind == kBlockedBf16 || kind == kBlockedBf16Widened ? at::kBFloat16 : at::kFloat;
  }
  // The activations' dtypes its kernels take: the weight's own; for Winograd, whose float32
  // weight serves bf16 activations too (WinogradTensorsOf), bf16 as well where the tier has
  // bf16 kernels.
  std::vector<at::ScalarType> activation_dtypes() const;

  // "direct", "winograd F(2x2,3x3)" or "winograd F(4x4,3x3)".
  std::string algorithm() const;
};

// Every layout: the logical one, then each compiled tier's.
const std::vector<WeightLayout>& weight_layouts();

// The layout called `name`; throws c10::ValueError listing the known names if there is none.
const WeightLayout& find_layout(const std::string& name, const char* op);

// The layout of `tier` for `algorithm` ("direct", "winograd2x2" or "winograd4x4") in float32,
// or for a direct conv in bfloat16 with `in_c_per_group` input channels per group (which
// matters only on tiers with bf16 dot products: its parity).
const WeightLayout& tier_layout(const CpuTier& tier, const std::string& algorithm);
const WeightLayout& tier_layout_bf16(const CpuTier& tier, int64_t in_c_per_group);

// Whether `tier`'s Winograd kernels take a (C_out, C_in, KH, KW) conv at all: 3x3, stride 1,
// no dilation or groups, C_in in whole vectors and C_out in whole weight blocks.
bool winograd_fits(const CpuTier& tier, int64_t out_c, int64_t in_c, int64_t kernel_h, int64_t kernel_w,
                   at::IntArrayRef stride, at::IntArrayRef dilation, int64_t groups);

// (C_out, C_in/groups, KH, KW) of a weight of shape `sizes` in `layout`; C_out is the bias's
// length for the packed layouts. Throws c10::ValueError naming the expected shape.
std::array<int64_t, 4> weight_geometry(const WeightLayout& layout, at::IntArrayRef sizes, int64_t out_c,
                                       int64_t groups, const char* op);

// A logical weight (C_out, C_in/groups, KH, KW) in `layout`.
at::Tensor pack_weight(const at::Tensor& weight, int64_t groups, const WeightLayout& layout, const char* op);

// An int8-blocked weight of a conv with fewer than 4 input channels and one group (each tap
// padded to 4 steps), repacked for the conv read as row windows (ops.cpp): each kernel row's
// KW x C_in steps side by side, padded with zeros to 4, as pack_weight packs a (KH, 1) conv
// over that many channels. Plain loops, about 11 thousand elements for ResNet's stem: it runs
// per call (the stem's measured 1.11-1.16x includes it, BENCHMARKS.md).
at::Tensor int8_row_window_weight(const at::Tensor& packed, const WeightLayout& layout, int64_t in_c,
                                  int64_t kernel_w);

// The logical weight back from a packed one (not for int8-blocked, whose padding hides
// C_in: an int8 model keeps its logical weight): exact for the blocked layouts; for Winograd
// g = G+ U G+^T with G's left inverse, in float64 (exact up to the rounding of U).
at::Tensor unpack_weight(const at::Tensor& packed, const WeightLayout& layout, int64_t out_c, int64_t groups);

}  // namespace fastresnet::cpu
