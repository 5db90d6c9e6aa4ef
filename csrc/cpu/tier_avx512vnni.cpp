// The AVX-512 + AVX512_VNNI tier: the avx512 tier's float and bf16 kernels and tuning
// (tier_avx512.h), with the int8 conv on VPDPBUSD (vec_int8_avx512vnni.h): 64 u8 x s8
// products per instruction against the AVX2 policy's 16 int16 products. CPUs that also have
// AVX512_BF16 run the avx512bf16 tier, which has the same int8 conv. Enabled for the kernels
// only, by the pragma region, as in tier_avx512.cpp (see there and tier_table.h for why).
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
#pragma GCC target("avx512f,avx512vnni,avx2,fma")
#include <immintrin.h>

#include "vec_avx512.h"
// Included after the vector type, in this order: each uses the ones before it.
#include "conv_kernel.h"
#include "pool_kernel.h"
#include "winograd_kernel.h"
#include "fma_chains.h"
#include "int8_conv_kernel.h"
#include "vec_int8_avx512vnni.h"
#include "tier_avx512.h"
#pragma GCC pop_options

#include "tier_table.h"

namespace fastresnet::cpu {
namespace {

const TierRegistration<Avx512<VecAvx512, Int8Avx512Vnni>> registration({
    .name = "avx512vnni",
    .features = "avx512f avx512_vnni fma",
    .os_state = "zmm",
    .rank = 516,
    .dtypes = "float32 bfloat16 int8",
    .winograd4x4_max_channels = kAvx512Winograd4x4MaxChannels,
    .winograd2x2_max_channels = kAvx512Winograd2x2MaxChannels,
    .bf16_dot_features = "avx512_bf16",
});

}  // namespace
}  // namespace fastresnet::cpu
#endif
