// The AVX-512 tiers' tuning (avx512, avx512vnni and avx512bf16 share it: the same zmm
// kernels, the second with VPDPBUSD for int8, the third with VPDPBUSD and VDPBF16PS for bf16).
// Included by their tier files after the target pragmas and the kernel templates.
#pragma once

namespace fastresnet::cpu {
namespace {

// Int8Policy: the int8 conv's (Int8Avx512Vnni with AVX512_VNNI; else Int8Avx2, ymm, since
// the zmm forms of its 16-bit products need AVX512BW, which the avx512 tier does not ask for).
template <class Vec, class Int8Policy>
struct Avx512 {
  using V = Vec;
  using Int8 = Int8Policy;
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

  // The bf16 dot-product probe: kFmaChains chains of VDPBF16PS (16 lanes x 2 bf16 products
  // into fp32). Its own target, beyond the tier's: it runs only where the CPU has
  // avx512_bf16 (TierFacts::bf16_dot_features), checked before it is called.
  __attribute__((target("avx512bf16,avx512f,avx2,fma"))) static float bf16_dot_chains(int64_t iterations) {
    __m512 acc[kFmaChains];
    for (int j = 0; j < kFmaChains; ++j) acc[j] = _mm512_set1_ps(0.01f * j);
    const __m512bh a = (__m512bh)_mm512_set1_epi16(0x3c00), b = (__m512bh)_mm512_set1_epi16(0x3c00);  // 2^-7
    for (int64_t i = 0; i < iterations; ++i) {
#pragma GCC unroll 16
      for (int j = 0; j < kFmaChains; ++j) acc[j] = _mm512_dpbf16_ps(acc[j], a, b);
    }
    __m512 total = acc[0];
    for (int j = 1; j < kFmaChains; ++j) total = _mm512_add_ps(total, acc[j]);
    return _mm512_cvtss_f32(total);
  }
};

// Winograd limits (C_out x C_in): F(4x4) against F(2x2) per layer, ms at batch 1 / 8
// (benchmarks/test_cpu_conv.py, AMD EPYC Zen 4, 2 threads, 2026-11-25): 64@56 0.42 vs 0.66 /
// 3.4 vs 5.2; 128@28 0.45 vs 0.59 / 3.0 vs 4.5; 256@14 0.64 vs 0.71 / 3.5 vs 4.2; 512@7 1.25
// vs 0.86 / 3.6 vs 5.5. Where layers are close, whole models decided (one process,
// interleaved): F(2x2) at 256x256 made ResNet-50 1.9% slower at batch 1, F(4x4) at 512x512
// 1.2% slower at batch 1 (1.1% faster at batch 8). F(2x2) up to 512x512 as on avx2 (see
// tier_avx2.cpp); wider layers are not measured, so they stay direct.
constexpr int64_t kAvx512Winograd4x4MaxChannels = 256 * 256;
constexpr int64_t kAvx512Winograd2x2MaxChannels = 512 * 512;

}  // namespace
}  // namespace fastresnet::cpu
