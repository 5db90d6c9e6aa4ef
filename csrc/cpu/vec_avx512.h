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
};

}  // namespace
}  // namespace fastresnet::cpu
