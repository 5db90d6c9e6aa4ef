// Scalar bfloat16 conversions, for the few values the vector kernels handle one by one
// (the global average pool's division). The vector types (vec_<tier>.h) do the same per lane.
#pragma once

#include <cstdint>
#include <cstring>

#include "kernels.h"

namespace fastresnet::cpu {

inline float bf16_to_float(Bf16 x) {
  const uint32_t bits = static_cast<uint32_t>(x.bits) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// Round to nearest, ties to even; a NaN stays a (quiet) NaN instead of rounding to infinity.
inline Bf16 float_to_bf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return Bf16{static_cast<uint16_t>((bits | 0x00400000u) >> 16)};
  return Bf16{static_cast<uint16_t>((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16)};
}

}  // namespace fastresnet::cpu
