// A tier's kernel table, filled from the templates of conv_kernel.h, winograd_kernel.h,
// pool_kernel.h and fma_chains.h for one `Isa` (its vector type and tuning constants, see
// tier_<name>.cpp), and its registration: a tier file that includes this registers its tier
// when the extension loads, so adding a tier needs no list to edit.
//
// Included after the tier file's `#pragma GCC pop_options`, so that this code, which runs
// at load on every CPU, has the generic target. The kernel templates it instantiates keep
// the target they were defined under. (Compiled under the AVX-512 pragma, make_tier copied
// TierFacts with zmm moves: the extension died with SIGILL on load on AVX2-only CPUs.)
#pragma once

#include "tiers.h"

namespace fastresnet::cpu {
namespace {

// Isa::bf16_dot_chains where the tier defines one (with its own target: see tier_avx512.cpp).
template <class Isa>
constexpr float (*bf16_dot_chains_of())(int64_t) {
  if constexpr (requires { &Isa::bf16_dot_chains; }) {
    return &Isa::bf16_dot_chains;
  } else {
    return nullptr;
  }
}

// How reduce_segment multiplies bf16 for vector type V: the dot product it looks for, or widening.
template <class V>
constexpr const char* bf16_conv_of() {
  if constexpr (HasDotPairs<V>) {
    return V::kDotPairsName;
  } else {
    return "fp32 FMAs on bf16 widened to fp32 (the input once per conv or per tile, the weights in registers)";
  }
}

// run_conv in bf16 on an input widened to fp32 by the op, for a vector type without bf16 dot
// products (kWidensInput); null for one with them.
template <class Isa>
constexpr auto run_conv_bf16_widened_of() -> decltype(CpuTier::run_conv_bf16_widened) {
  if constexpr (kWidensInput<Isa, Bf16>) {
    return &run_conv<Isa, Bf16, float>;
  } else {
    return nullptr;
  }
}

// The int8 kernels of policy I (int8_conv_kernel.h, fma_chains.h).
template <class I>
constexpr Int8Kernels int8_kernels_of() {
  return {I::kName, I::kWeightBound, I::kBlock, I::kPacking, &plan_int8_conv<I>, &run_int8_conv<I>,
          &int8_dot_chains<I>};
}

// Those of I::Narrow, the faster form for weights within a narrower bound, where I has one.
template <class I>
constexpr Int8Kernels int8_narrow_kernels_of() {
  if constexpr (requires { typename I::Narrow; }) {
    return int8_kernels_of<typename I::Narrow>();
  } else {
    return {};
  }
}

template <class Isa>
CpuTier make_tier(const TierFacts& facts) {
  using V = typename Isa::V;
  // The accumulators, the block's two weight vectors and a broadcast must fit the registers.
  static_assert(2 * Isa::kTileRows + 3 <= V::kRegisters, "the register tile does not fit");
  return CpuTier{facts,
                 V::kLanes,
                 2 * V::kLanes,
                 bf16_conv_of<V>(),
                 &plan_conv<Isa, float>,
                 &run_conv<Isa, float>,
                 &plan_winograd<Isa>,
                 &run_winograd<Isa, float>,
                 &max_pool_nhwc<V, float>,
                 &global_avg_pool_nhwc<V, float>,
                 &add_relu<V, float>,
                 kWidensInput<Isa, Bf16>,
                 &plan_conv<Isa, Bf16>,
                 &run_conv<Isa, Bf16>,
                 run_conv_bf16_widened_of<Isa>(),
                 &max_pool_nhwc<V, Bf16>,
                 &global_avg_pool_nhwc<V, Bf16>,
                 &add_relu<V, Bf16>,
                 &run_winograd<Isa, Bf16>,
                 int8_kernels_of<typename Isa::Int8>(),
                 int8_narrow_kernels_of<typename Isa::Int8>(),
                 &fma_chains<V>,
                 bf16_dot_chains_of<Isa>()};
}

// The tier of `Isa`, built and registered (tiers.h) when the extension loads.
template <class Isa>
struct TierRegistration {
  explicit TierRegistration(const TierFacts& facts) {
    static const CpuTier tier = make_tier<Isa>(facts);
    register_tier(&tier);
  }
};

}  // namespace
}  // namespace fastresnet::cpu
