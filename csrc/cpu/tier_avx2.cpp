// The AVX2+FMA tier: the kernel templates compiled for 8-wide ymm vectors (16 registers).
// Enabled for the kernels only, by the pragma region (not a global -mavx2, which would let the
// compiler use AVX2 in code that runs at import, such as this file's registration, compiled
// after the region: tier_table.h). Standard headers come before the pragma, so the inline
// functions this file shares with the rest of the extension keep the generic target. Not compiled on other architectures: the build then has no such tier.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <utility>
#include <vector>

#include "bf16.h"   // before the pragma too: the scalar conversions keep the generic target
#include "tiers.h"  // before the pragma too: it holds <map> and <string>

#if defined(__x86_64__)
#pragma GCC push_options  // the target is for the kernels only: see tier_table.h
#pragma GCC target("avx2,fma")
#include <immintrin.h>

#include "vec_avx2.h"
// Included after the vector type, in this order: each uses the ones before it.
#include "conv_kernel.h"
#include "pool_kernel.h"
#include "winograd_kernel.h"
#include "fma_chains.h"
#include "vec_int8_avx2.h"
#include "int8_conv_kernel.h"

namespace fastresnet::cpu {
namespace {

struct Avx2 {
  using V = VecAvx2;
  using Int8 = Int8Avx2;
  static constexpr int kTileRows = 6;  // 12 accumulators + 2 weight vectors + 1 broadcast = 15 of 16 ymm
  static constexpr int64_t kReductionChunk = 1024;  // as avx512 (see there): 256 was 4% slower on ResNet-50
  static constexpr int64_t kL2Budget = 256 << 10;
  static constexpr int64_t kWinogradTilesPerChunk = 30;
};

}  // namespace
}  // namespace fastresnet::cpu
#pragma GCC pop_options

#include "tier_table.h"

namespace fastresnet::cpu {
namespace {

// Winograd limits (C_out x C_in): F(4x4) against F(2x2) per layer, ms at batch 1 / 8
// (benchmarks/test_cpu_conv.py, AMD EPYC Zen 4, 2 threads, 2026-11-25): 128@28 0.49 vs 0.65;
// 256@14 0.71 vs 0.77 / 3.6 vs 4.4; 512@7 1.28 vs 1.00 / 4.2 vs 5.9 (16 registers: the 6x6
// transforms spill). In whole models F(4x4) at 256x256 measured within 2% either way
// (ResNet-50 batch 1 +1.7%, batch 8 -1.0%), so the narrower limit stays. F(2x2) reads a
// transformed weight 16/9 the size of the direct one; on AVX2 (Zen 3, hot caches) it was
// 1.6-1.9x direct up to 256x256 channels and 1.15x (batch 1) / 1.27x (batch 8) at 512x512 on
// a 7x7 map; ResNet-34 with 512x512 included vs excluded: 30.5 vs 31.0 ms (b1), 211 vs 219 ms
// (b8). Wider layers are not measured, so they stay direct.
const TierRegistration<Avx2> registration({
    .name = "avx2",
    .features = "avx2 fma",
    .os_state = "ymm",
    .rank = 256,
    .dtypes = "float32 bfloat16 int8",
    .winograd4x4_max_channels = 128 * 128,
    .winograd2x2_max_channels = 512 * 512,
});

}  // namespace
}  // namespace fastresnet::cpu
#endif
