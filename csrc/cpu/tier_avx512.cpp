// The AVX-512 tier: the kernel templates compiled for 16-wide zmm vectors (32 registers),
// AVX-512F only (no BW/VL/DQ instructions are used).
// Enabled for this file only, by the pragma (not a global -mavx512f, which would let the
// compiler use AVX-512 in code that runs at import). Standard headers come before the pragma,
// so the inline functions this file shares with the rest of the extension keep the generic
// target. Not compiled on other architectures: avx512_tier() is then null.
#include <algorithm>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

#include "kernels.h"
#include "tiers.h"

#if defined(__x86_64__)
#pragma GCC target("avx512f,avx2,fma")
#include <immintrin.h>

#include "vec_avx512.h"
// Included after the vector type, in this order: each uses the ones before it.
#include "conv_kernel.h"
#include "pool_kernel.h"
#include "winograd_kernel.h"
#include "tier_table.h"

namespace fastresnet::cpu {
namespace {

struct Avx512 {
  using V = VecAvx512;
  // 16 accumulators + 2 weight vectors + 1 broadcast. Measured on Zen 4, one thread, on
  // ResNet-50's direct layers: 8 rows run at 94-98% of the FMA peak, 12 rows at 84-94%
  // (ResNet-50 batch 1 7% faster). Likely cause: with C_in >= 1024 the rows' input lines,
  // C_in floats apart, all fall in one 8-way L1 set; a bare 12-row loop over such rows ran
  // at 89% of peak, over the same values packed contiguously at 99%. 14 rows spilled row
  // pointers to the stack.
  static constexpr int kTileRows = 8;
  // Long enough that most layers finish a tile's reduction in one pass: measured on Zen 4,
  // 128 (a flush's input and weights within L1) made ResNet-50 7% slower at batch 1 and
  // 6% at batch 8 than 1024; 1024 and an unbounded reduction measured alike.
  static constexpr int64_t kReductionChunk = 1024;
  static constexpr int64_t kL2Budget = 256 << 10;
  static constexpr int64_t kWinogradTilesPerChunk = 30;
};

}  // namespace

const CpuTier* avx512_tier() {
  static const CpuTier tier = make_tier<Avx512>("avx512", "avx512f fma");
  return &tier;
}

}  // namespace fastresnet::cpu
#else
namespace fastresnet::cpu {
const CpuTier* avx512_tier() { return nullptr; }
}  // namespace fastresnet::cpu
#endif
