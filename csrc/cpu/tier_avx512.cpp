// The AVX-512 tier: the kernel templates compiled for 16-wide zmm vectors (32 registers),
// AVX-512F only (no BW/VL/DQ instructions are used); bf16 convs widen each pair of bf16 to
// fp32 in registers. CPUs with AVX512_BF16 run the avx512bf16 tier instead (its file).
// Enabled for the kernels only, by the pragma region (not a global -mavx512f, which would let
// the compiler use AVX-512 in code that runs at import, such as this file's registration,
// compiled after the region: tier_table.h). Standard headers come before the pragma, so the
// inline functions this file shares with the rest of the extension keep the generic target.
// The int8 conv is the AVX2 one (vec_int8_avx2.h); CPUs with AVX512_VNNI run the
// avx512vnni tier's. Not compiled on other architectures: the build then has no such tier.
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
#pragma GCC target("avx512f,avx2,fma")
#include <immintrin.h>

#include "vec_avx512.h"
// Included after the vector type, in this order: each uses the ones before it.
#include "conv_kernel.h"
#include "pool_kernel.h"
#include "winograd_kernel.h"
#include "fma_chains.h"
#include "vec_int8_avx2.h"
#include "int8_conv_kernel.h"
#include "tier_avx512.h"
#pragma GCC pop_options

#include "tier_table.h"

namespace fastresnet::cpu {
namespace {

const TierRegistration<Avx512<VecAvx512, Int8Avx2>> registration({
    .name = "avx512",
    .features = "avx512f fma",
    .os_state = "zmm",
    .rank = 512,
    .dtypes = "float32 bfloat16 int8",
    .winograd4x4_max_channels = kAvx512Winograd4x4MaxChannels,
    .winograd2x2_max_channels = kAvx512Winograd2x2MaxChannels,
    .bf16_dot_features = "avx512_bf16",
});

}  // namespace
}  // namespace fastresnet::cpu
#endif
