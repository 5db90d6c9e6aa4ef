// The AVX2+FMA tier: the kernel templates compiled for 8-wide ymm vectors (16 registers).
// Enabled for this file only, by the pragma (not a global -mavx2, which would let the
// compiler use AVX2 in code that runs at import). Standard headers come before the pragma,
// so the inline functions this file shares with the rest of the extension keep the generic
// target. Not compiled on other architectures: avx2_tier() is then null.
#include <algorithm>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

#include "kernels.h"
#include "tiers.h"

#if defined(__x86_64__)
#pragma GCC target("avx2,fma")
#include <immintrin.h>

#include "vec_avx2.h"
// Included after the vector type, in this order: each uses the ones before it.
#include "conv_kernel.h"
#include "pool_kernel.h"
#include "winograd_kernel.h"
#include "tier_table.h"

namespace fastresnet::cpu {
namespace {

struct Avx2 {
  using V = VecAvx2;
  static constexpr int kTileRows = 6;  // 12 accumulators + 2 weight vectors + 1 broadcast = 15 of 16 ymm
  static constexpr int64_t kReductionChunk = 1024;  // as avx512 (see there): 256 was 4% slower on ResNet-50
  static constexpr int64_t kL2Budget = 256 << 10;
  static constexpr int64_t kWinogradTilesPerChunk = 30;
};

}  // namespace

const CpuTier* avx2_tier() {
  static const CpuTier tier = make_tier<Avx2>("avx2", "avx2 fma");
  return &tier;
}

}  // namespace fastresnet::cpu
#else
namespace fastresnet::cpu {
const CpuTier* avx2_tier() { return nullptr; }
}  // namespace fastresnet::cpu
#endif
