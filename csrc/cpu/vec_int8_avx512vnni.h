// The int8 conv's vector operations on zmm registers with AVX512_VNNI: VPDPBUSD multiplies
// the four u8 bytes of each 32-bit lane of one operand by the four s8 bytes of the other and
// adds the four products to the lane's int32 sum, 64 products per instruction (4x an fp32
// FMA's 16). Each product fits 16 bits and the non-saturating form wraps only past int32,
// which the op's bound on the reduction (ops.cpp) rules out, so the sums are the reference's
// integers (ops/int8_reference.py) bit for bit, as with the AVX2 policy (vec_int8_avx2.h),
// whose interface this follows. Its weight is int8 as it is: for each quad of reduction
// steps, every output channel's four bytes side by side (layouts.h, Int8Packing::kQuads).
// Included by the AVX-512 tier files after their target pragma, which must add avx512vnni.
#pragma once

namespace fastresnet::cpu {
namespace {

struct Int8Avx512Vnni {
  using Acc = __m512i;  // 16 int32 sums: one output channel per lane
  static constexpr int kLanes = 16;
  // Rows x 2 accumulators + 2 weight vectors + the broadcast input, of 32 zmm (see tier_avx512.h).
  static constexpr int kTileRows = 12;
  static constexpr int64_t kBlock = 2 * kLanes;
  static constexpr int64_t kL2Budget = 256 << 10;
  static constexpr const char* kName = "u8 x s8 dot products into int32 (VPDPBUSD, exact)";
  static constexpr int kWeightBound = 127;  // any int8 weight (quantize() uses -127..127)

  using Weight = int8_t;
  static constexpr Int8Packing kPacking = Int8Packing::kQuads;

  static Acc zero() { return _mm512_setzero_si512(); }
  // One pixel's four reduction steps, the same four bytes in every lane (a {1to16} broadcast).
  using Input = Acc;
  static Input load_input(const uint8_t* p) {
    int32_t quad;
    std::memcpy(&quad, p, sizeof quad);
    return _mm512_set1_epi32(quad);
  }
  using Weights = Acc;  // vector v: output channels kLanes v .., four steps per lane
  static Weights load_weights(const Weight* quad, int v) { return _mm512_loadu_si512(quad + 4 * kLanes * v); }
  static Acc dot(Acc acc, Input x, Weights w) { return _mm512_dpbusd_epi32(acc, x, w); }

  // The epilogue, in the reference's order, one float32 rounding per operation: as Int8Avx2.
  using F = __m512;
  static F to_float(Acc a) { return _mm512_cvtepi32_ps(a); }
  static Acc sub(Acc a, Acc b) { return _mm512_sub_epi32(a, b); }
  static Acc load_int32(const int32_t* p) { return _mm512_loadu_si512(p); }
  static F load(const float* p) { return _mm512_loadu_ps(p); }
  static F set1(float x) { return _mm512_set1_ps(x); }
  static F mul(F a, F b) {  // held in a register: no contraction into an FMA (see Int8Avx2::mul)
    F product = _mm512_mul_ps(a, b);
    asm("" : "+v"(product));
    return product;
  }
  static F sub(F a, F b) { return _mm512_sub_ps(a, b); }
  static F add(F a, F b) { return _mm512_add_ps(a, b); }
  static F load_u8(const uint8_t* p) {
    return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
  }
  // max(round_half_even(t) + zero_point, lowest) saturated to 255, as 16 bytes (see Int8Avx2).
  using U8s = __m128i;
  static U8s to_u8(F t, Acc zero_point, Acc lowest) {
    t = _mm512_min_ps(t, _mm512_set1_ps(512.0f));
    const __m512i q = _mm512_add_epi32(_mm512_cvtps_epi32(t), zero_point);  // nearest even (MXCSR default)
    return _mm512_cvtusepi32_epi8(_mm512_max_epi32(q, lowest));           // VPMOVUSDB: saturates to 255
  }
  static Acc set1_int32(int32_t x) { return _mm512_set1_epi32(x); }
};

}  // namespace
}  // namespace fastresnet::cpu
