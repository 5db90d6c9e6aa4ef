// The AVX2+FMA vector type: 8 fp32 lanes in a ymm register, 16 registers. Included only by
// tier_avx2.cpp, after its target pragma; the kernels (conv_kernel.h and friends) are written
// against this interface: width, loads/stores, masked tails, broadcast, FMA, max.
#pragma once

namespace fastresnet::cpu {
namespace {

struct VecAvx2 {
  using Reg = __m256;
  using Mask = __m256i;  // lanes to touch: all bits set in each active lane
  static constexpr int kLanes = 8;
  static constexpr int kRegisters = 16;

  static Reg zero() { return _mm256_setzero_ps(); }
  static Reg set1(float x) { return _mm256_set1_ps(x); }
  static Reg load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, Reg v) { _mm256_storeu_ps(p, v); }
  static Mask first_lanes(int64_t valid) {  // lanes [0, valid)
    alignas(32) static const int32_t ramp[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int32_t>(valid < 8 ? valid : 8)),
                              _mm256_load_si256(reinterpret_cast<const __m256i*>(ramp)));
  }
  static Reg load(const float* p, Mask m) { return _mm256_maskload_ps(p, m); }
  static void store(float* p, Reg v, Mask m) { _mm256_maskstore_ps(p, m, v); }
  static Reg broadcast(const float* p) { return _mm256_broadcast_ss(p); }
  static Reg fma(Reg a, Reg b, Reg c) { return _mm256_fmadd_ps(a, b, c); }  // a * b + c
  static Reg add(Reg a, Reg b) { return _mm256_add_ps(a, b); }
  static Reg sub(Reg a, Reg b) { return _mm256_sub_ps(a, b); }
  static Reg mul(Reg a, Reg b) { return _mm256_mul_ps(a, b); }
  // max(v, 0) with NaN kept, as torch.relu (maxps returns its second operand on NaN).
  static Reg relu(Reg v) { return _mm256_max_ps(_mm256_setzero_ps(), v); }
  // max(best, v), where a NaN in either stays NaN, as torch's max pooling.
  static Reg max_keep_nan(Reg best, Reg v) {
    return _mm256_blendv_ps(_mm256_max_ps(v, best), v, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
  }
  static float first(Reg v) { return _mm256_cvtss_f32(v); }

  // bfloat16 as in VecAvx512: exact widening loads, stores rounded to nearest even with NaN
  // kept; masked ones through a zeroed copy.
  static Reg load(const Bf16* p) {
    return _mm256_castsi256_ps(
        _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))), 16));
  }
  static Reg load(const Bf16* p, Mask m) {
    alignas(16) Bf16 copy[kLanes] = {};
    std::memcpy(copy, p, sizeof(Bf16) * valid_lanes(m));
    return load(copy);
  }
  static void store(Bf16* p, Reg v) { _mm_storeu_si128(reinterpret_cast<__m128i*>(p), bf16_halves(v)); }
  static void store(Bf16* p, Reg v, Mask m) {
    alignas(16) Bf16 copy[kLanes];
    _mm_store_si128(reinterpret_cast<__m128i*>(copy), bf16_halves(v));
    std::memcpy(p, copy, sizeof(Bf16) * valid_lanes(m));
  }

  // Pairs of bf16 (a conv's reduction steps k, k + 1 in one 32-bit lane, k in the low half).
  static Reg load_pairs(const Bf16* p) { return _mm256_castsi256_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }
  static Reg broadcast_pair(const Bf16* p) {
    int32_t pair;
    std::memcpy(&pair, p, sizeof pair);
    return _mm256_castsi256_ps(_mm256_set1_epi32(pair));
  }
  static Reg low_of_pairs(Reg pairs) { return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_castps_si256(pairs), 16)); }
  static Reg high_of_pairs(Reg pairs) {
    return _mm256_castsi256_ps(_mm256_and_si256(_mm256_castps_si256(pairs), _mm256_set1_epi32(int32_t(0xffff0000u))));
  }

 private:
  static int valid_lanes(Mask m) { return __builtin_popcount(_mm256_movemask_ps(_mm256_castsi256_ps(m))); }
  // The 8 lanes rounded to bf16, packed into 128 bits.
  static __m128i bf16_halves(Reg v) {
    const __m256i x = _mm256_castps_si256(v);
    const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(x, 16), _mm256_set1_epi32(1));
    const __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(x, _mm256_add_epi32(odd, _mm256_set1_epi32(0x7fff))), 16);
    const __m256i quiet = _mm256_srli_epi32(_mm256_or_si256(x, _mm256_set1_epi32(0x00400000)), 16);
    const __m256i bits = _mm256_blendv_epi8(rounded, quiet, _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q)));
    // packus works within 128-bit lanes: lanes 0-3 land in qword 0, lanes 4-7 in qword 2.
    return _mm256_castsi256_si128(_mm256_permute4x64_epi64(_mm256_packus_epi32(bits, bits), 0b1000));
  }
};

}  // namespace
}  // namespace fastresnet::cpu
