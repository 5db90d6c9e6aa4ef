// The AVX-512 + AVX512_BF16 tier: the avx512 tier's kernels and tuning (tier_avx512.h), with
// bf16 convs on VDPBF16PS: each instruction multiplies 16 lanes x 2 bf16 pairs into fp32,
// twice the products of an fp32 FMA, reading the weight's pairs (ConvTensorsOf) as they are.
// What it gains depends on the CPU: where VDPBF16PS issues as often as an FMA (AMD Zen 4)
// it doubles the reduction's rate; where it does not, the widening path of the avx512 tier
// may be as fast (FASTRESNET_CPU_ISA=avx512 picks it). Its int8 conv is the avx512vnni
// tier's (VPDPBUSD): it asks for AVX512_VNNI too, which every CPU with AVX512_BF16 so far has
// (Intel Cooper Lake and later Xeons, AMD Zen 4 and later). Enabled for this file only, by
// the pragma, as in tier_avx512.cpp.
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
#pragma GCC target("avx512f,avx512bf16,avx512vnni,avx2,fma")
#include <immintrin.h>

#include "vec_avx512.h"

namespace fastresnet::cpu {
namespace {

// VecAvx512 with the bf16 dot product the conv kernel looks for (reduce_segment).
struct VecAvx512Bf16 : VecAvx512 {
  static constexpr const char* kDotPairsName = "bf16 dot products (VDPBF16PS)";
  // acc + x.low * w.low + x.high * w.high per lane (x, w: bf16 pairs), into fp32.
  static Reg dot_pairs(Reg acc, Reg x, Reg w) {
    return _mm512_dpbf16_ps(acc, (__m512bh)_mm512_castps_si512(x), (__m512bh)_mm512_castps_si512(w));
  }
};

}  // namespace
}  // namespace fastresnet::cpu

// Included after the vector type, in this order: each uses the ones before it.
#include "conv_kernel.h"
#include "pool_kernel.h"
#include "winograd_kernel.h"
#include "fma_chains.h"
#include "vec_int8_avx512vnni.h"
#include "int8_conv_kernel.h"
#include "tier_avx512.h"
#pragma GCC pop_options

#include "tier_table.h"

namespace fastresnet::cpu {
namespace {

const TierRegistration<Avx512<VecAvx512Bf16, Int8Avx512Vnni>> registration({
    .name = "avx512bf16",
    .features = "avx512f avx512_bf16 avx512_vnni fma",
    .os_state = "zmm",
    .rank = 520,
    .dtypes = "float32 bfloat16 int8",
    .winograd4x4_max_channels = kAvx512Winograd4x4MaxChannels,
    .winograd2x2_max_channels = kAvx512Winograd2x2MaxChannels,
    .bf16_dot_features = "avx512_bf16",
    // bf16, ms per 3x3 layer at batch 1 / 8, 2 threads, on a 2-vCPU AMD EPYC Zen 4
    // (benchmarks/compare_bf16_conv3x3.py; direct VDPBF16PS at 410-452 GFLOP/s, near its
    // measured 439-457 GFLOP/s peak; Winograd products in fp32):
    //   64@56   direct 0.56 / 4.30   F(2x2) 0.60 / 4.90   F(4x4) 0.38 / 3.22
    //   128@28  direct 0.52 / 4.18   F(2x2) 0.54 / 4.56   F(4x4) 0.34 / 2.72
    //   256@14  direct 0.51 / 4.23   F(2x2) 0.52 / 4.13   F(4x4) 0.44 / 3.28
    //   512@7   direct 0.54 / 4.13   F(2x2) 0.70 / 5.42   F(4x4) 1.13 / 3.85
    // F(4x4) up to 256x256 as in fp32; F(2x2) never wins by much, and at 512@7 it loses: with
    // it up to 512x512, ResNet-18 ran 17% / 8% slower (batch 1 / 8) and ResNet-50 within 1%
    // (benchmarks/compare_bf16_winograd_limits.py). So no F(2x2).
    .bf16_winograd4x4_max_channels = kAvx512Winograd4x4MaxChannels,
    .bf16_winograd2x2_max_channels = kAvx512Winograd4x4MaxChannels,
});

}  // namespace
}  // namespace fastresnet::cpu
#endif
