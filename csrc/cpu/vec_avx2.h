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
};

}  // namespace
}  // namespace fastresnet::cpu
