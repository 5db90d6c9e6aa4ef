// The peak probes' kernels, written against a vector type (or an int8 policy) and compiled
// per tier, inside the tier file's target region (fma_peak.cpp times them).
#pragma once

#include <cstdint>
#include <cstring>

namespace fastresnet::cpu {
namespace {

// kFmaChains independent chains of vector FMAs, so the loop is bound by FMA throughput alone.
template <class V>
float fma_chains(int64_t iterations) {
  typename V::Reg acc[kFmaChains];
  for (int j = 0; j < kFmaChains; ++j) acc[j] = V::set1(1.0f + 0.01f * j);
  const typename V::Reg scale = V::set1(0.999999f), shift = V::set1(1e-6f);
  for (int64_t i = 0; i < iterations; ++i) {
#pragma GCC unroll 16
    for (int j = 0; j < kFmaChains; ++j) acc[j] = V::fma(acc[j], scale, shift);
  }
  typename V::Reg total = acc[0];
  for (int j = 1; j < kFmaChains; ++j) total = V::add(total, acc[j]);
  return V::first(total);
}

// kFmaChains chains of the int8 policy I's dot product (four u8 x s8 products per int32
// lane: VPDPBUSD, or the AVX2 policy's VPMADDWD pairs), the ceiling of the int8 conv.
template <class I>
float int8_dot_chains(int64_t iterations) {
  uint8_t quad[4] = {1, 2, 3, 4};
  typename I::Weight weights[8 * I::kBlock];
  for (auto& w : weights) w = 1;
  const typename I::Input x = I::load_input(quad);
  const typename I::Weights w = I::load_weights(weights, 0);
  typename I::Acc acc[kFmaChains];
  for (int j = 0; j < kFmaChains; ++j) acc[j] = I::set1_int32(j);
  for (int64_t i = 0; i < iterations; ++i) {
#pragma GCC unroll 16
    for (int j = 0; j < kFmaChains; ++j) acc[j] = I::dot(acc[j], x, w);
  }
  int32_t lanes[kFmaChains][I::kLanes];
  std::memcpy(lanes, acc, sizeof lanes);
  int32_t total = 0;
  for (int j = 0; j < kFmaChains; ++j) total += lanes[j][0];
  return static_cast<float>(total);
}

}  // namespace
}  // namespace fastresnet::cpu
