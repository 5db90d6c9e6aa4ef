// The FMA peak probe's kernel, written against a vector type and compiled per tier, inside
// the tier file's target region (fma_peak.cpp times it).
#pragma once

#include <cstdint>

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

}  // namespace
}  // namespace fastresnet::cpu
