// The AVX-512 vector type: 16 fp32 lanes in a zmm register, 32 registers, tails through
// opmask registers. Included only by tier_avx512.cpp, after its target pragma; same
// interface as VecAvx2 (vec_avx2.h).
#pragma once

namespace fastresnet::cpu {
namespace {

struct VecAvx512 {
  using Reg = __m512;
  using Mask = __mmask16;
  static constexpr int kLanes = 16;
  static constexpr int kRegisters = 32;

  static Reg zero() { return _mm512_setzero_ps(); }
  static Reg set1(float x) { return _mm512_set1_ps(x); }
  static Reg load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, Reg v) { _mm512_storeu_ps(p, v); }
  static Mask first_lanes(int64_t valid) {  // lanes [0, valid)
    return valid >= 16 ? static_cast<Mask>(0xFFFF) : static_cast<Mask>((1u << (valid < 0 ? 0 : valid)) - 1u);
  }
  static Reg load(const float* p, Mask m) { return _mm512_maskz_loadu_ps(m, p); }
  static void store(float* p, Reg v, Mask m) { _mm512_mask_storeu_ps(p, m, v); }
  static Reg broadcast(const float* p) { return _mm512_set1_ps(*p); }  // folds into the FMA's {1to16}
  static Reg fma(Reg a, Reg b, Reg c) { return _mm512_fmadd_ps(a, b, c); }  // a * b + c
  static Reg add(Reg a, Reg b) { return _mm512_add_ps(a, b); }
  static Reg sub(Reg a, Reg b) { return _mm512_sub_ps(a, b); }
  static Reg mul(Reg a, Reg b) { return _mm512_mul_ps(a, b); }
  // max(v, 0) with NaN kept, as torch.relu (maxps returns its second operand on NaN).
  static Reg relu(Reg v) { return _mm512_max_ps(_mm512_setzero_ps(), v); }
  // max(best, v), where a NaN in either stays NaN, as torch's max pooling.
  static Reg max_keep_nan(Reg best, Reg v) {
    return _mm512_mask_mov_ps(_mm512_max_ps(v, best), _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), v);
  }
  static float first(Reg v) { return _mm512_cvtss_f32(v); }

  // bfloat16: loads widen exactly (the bits shifted up); stores round to nearest even, NaN
  // kept (quiet). Masked loads go through a zeroed copy: AVX-512F has no 16-bit masked load.
  static Reg load(const Bf16* p) {
    return widen(_mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))));
  }
  static Reg load(const Bf16* p, Mask m) {
    alignas(32) Bf16 copy[kLanes] = {};
    std::memcpy(copy, p, sizeof(Bf16) * __builtin_popcount(m));
    return load(copy);
  }
  static void store(Bf16* p, Reg v) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtepi32_epi16(bf16_bits(v)));
  }
  static void store(Bf16* p, Reg v, Mask m) { _mm512_mask_cvtepi32_storeu_epi16(p, m, bf16_bits(v)); }

  // Pairs of bf16 (a conv's reduction steps k, k + 1 in one 32-bit lane, k in the low half).
  static Reg load_pairs(const Bf16* p) { return _mm512_castsi512_ps(_mm512_loadu_si512(p)); }
  static Reg broadcast_pair(const Bf16* p) {
    int32_t pair;
    std::memcpy(&pair, p, sizeof pair);
    return _mm512_castsi512_ps(_mm512_set1_epi32(pair));
  }
  static Reg low_of_pairs(Reg pairs) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_castps_si512(pairs), 16)); }
  static Reg high_of_pairs(Reg pairs) {
    return _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(pairs), _mm512_set1_epi32(int32_t(0xffff0000u))));
  }

 private:
  static Reg widen(__m512i halves) { return _mm512_castsi512_ps(_mm512_slli_epi32(halves, 16)); }
  // Each lane's bf16, rounded, in its low 16 bits.
  static __m512i bf16_bits(Reg v) {
    const __m512i x = _mm512_castps_si512(v);
    const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(x, 16), _mm512_set1_epi32(1));
    const __m512i rounded = _mm512_srli_epi32(_mm512_add_epi32(x, _mm512_add_epi32(odd, _mm512_set1_epi32(0x7fff))), 16);
    const __m512i quiet = _mm512_srli_epi32(_mm512_or_si512(x, _mm512_set1_epi32(0x00400000)), 16);
    return _mm512_mask_mov_epi32(rounded, _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), quiet);
  }
};

}  // namespace
}  // namespace fastresnet::cpu
