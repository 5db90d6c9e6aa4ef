// The int8 conv's vector operations on ymm registers (AVX2): uint8 activations times int8
// weights, summed exactly in int32, and the float32 requantizing epilogue. Included by every
// x86 tier file after its target pragma (AVX2 is part of each): int8_conv_kernel.h is written
// against this interface.
//
// The products, two ways. AVX2's VPMADDUBSW multiplies u8 x s8 and sums each pair into a
// saturating int16, which 255 x 127 x 2 = 64770 overflows: a result that depended on the data.
// - Int8Avx2 takes any int8 weight: both operands 16-bit, the weight stored widened to int16
//   (its layout, "<tier>:int8-blocked") and each activation byte zero-extended in registers,
//   so VPMADDWD's pairs (at most 2 x 255 x 127) and the int32 sums are exact.
// - Int8Avx2Narrow takes weights in -64..64 only ("<tier>:int8-7bit", what quantize() makes
//   on these tiers unless told otherwise): a pair is then at most 2 x 255 x 64 = 32640, inside
//   int16, so VPMADDUBSW never saturates, and VPMADDWD by ones sums the two pairs into int32.
//   Two multiplies per 32 products, as above, but no widening and half the weight bytes.
// Either way the answer is the integer sum of the reference (ops/int8_reference.py), bit for bit.
#pragma once

namespace fastresnet::cpu {
namespace {

// What both product forms share: the int32 sums and the epilogue.
struct Int8Avx2Epilogue {
  using Acc = __m256i;  // 8 int32 sums: one output channel per lane
  static constexpr int kLanes = 8;
  static constexpr int64_t kBlock = 2 * kLanes;  // output channels per weight block
  static constexpr int64_t kL2Budget = 256 << 10;

  static Acc zero() { return _mm256_setzero_si256(); }

  // The epilogue, in the reference's order (ops/int8_reference.py), one float32 rounding per
  // operation.
  using F = __m256;
  static F to_float(Acc a) { return _mm256_cvtepi32_ps(a); }  // exact below 2^24, else nearest even
  static Acc sub(Acc a, Acc b) { return _mm256_sub_epi32(a, b); }
  static Acc load_int32(const int32_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
  static F load(const float* p) { return _mm256_loadu_ps(p); }
  static F set1(float x) { return _mm256_set1_ps(x); }
  // The product held in a register by an empty asm, so that the compiler cannot contract it
  // with the next add into an FMA (one rounding where the reference rounds twice).
  static F mul(F a, F b) {
    F product = _mm256_mul_ps(a, b);
    asm("" : "+x"(product));
    return product;
  }
  static F sub(F a, F b) { return _mm256_sub_ps(a, b); }
  static F add(F a, F b) { return _mm256_add_ps(a, b); }
  // 8 uint8 (a residual) as float32.
  static F load_u8(const uint8_t* p) {
    int64_t bytes;
    std::memcpy(&bytes, p, sizeof bytes);
    return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128(bytes)));
  }
  // max(round_half_even(t) + zero_point, lowest), saturated to 255, as 8 bytes: lowest is 0,
  // or the zero point where a ReLU comes first. t is first clamped to 512, which changes no
  // result (the output saturates beyond) and keeps the conversion inside int32; far below
  // int32 it gives INT32_MIN, which stays negative after the zero point is added.
  using U8s = int64_t;  // kLanes bytes
  static U8s to_u8(F t, Acc zero_point, Acc lowest) {
    t = _mm256_min_ps(t, _mm256_set1_ps(512.0f));
    __m256i q = _mm256_add_epi32(_mm256_cvtps_epi32(t), zero_point);  // nearest even (MXCSR default)
    q = _mm256_max_epi32(q, lowest);
    const __m128i words = _mm_packs_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
    return _mm_cvtsi128_si64(_mm_packus_epi16(words, words));  // saturates to 255
  }
  static Acc set1_int32(int32_t x) { return _mm256_set1_epi32(x); }
};

// Weights in -64..64: VPMADDUBSW, then VPMADDWD by ones (see the top of this file).
struct Int8Avx2Narrow : Int8Avx2Epilogue {
  // 10 accumulators, 2 weight vectors, the input, the ones and a product: 15 of 16 ymm. With
  // 6 rows GCC kept one accumulator on the stack (a load and a store per step).
  static constexpr int kTileRows = 5;
  static constexpr const char* kName = "u8 x s7 by VPMADDUBSW (int16 pairs that cannot saturate), VPMADDWD into int32 (exact)";
  static constexpr int kWeightBound = 64;  // |w| <= 64: 2 x 255 x 64 = 32640 fits int16

  // The weight's elements and packing: int8 as it is, each output channel's four steps side by side.
  using Weight = int8_t;
  static constexpr Int8Packing kPacking = Int8Packing::kQuads;

  // One pixel's four reduction steps, the same four bytes in every lane.
  using Input = Acc;
  static Input load_input(const uint8_t* p) {
    int32_t quad;
    std::memcpy(&quad, p, sizeof quad);
    return _mm256_set1_epi32(quad);
  }
  using Weights = Acc;  // vector v: output channels kLanes v .., four steps per lane
  static Weights load_weights(const Weight* quad, int v) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(quad + 4 * kLanes * v));
  }
  static Acc dot(Acc acc, Input x, Weights w) {
    const __m256i pairs = _mm256_maddubs_epi16(x, w);  // u8 first: the input, then the weight
    return _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)));
  }
};

// Any int8 weight: widened to int16, VPMADDWD into int32 (see the top of this file).
struct Int8Avx2 : Int8Avx2Epilogue {
  static constexpr int kTileRows = 4;  // see int8_conv_kernel.h: 8 accumulators, 4 weight vectors, input, mask
  static constexpr const char* kName = "u8 x s8 widened to int16, VPMADDWD into int32 (exact)";
  static constexpr int kWeightBound = 127;
  // The faster form for weights within its bound, with its own layout (layouts.h).
  using Narrow = Int8Avx2Narrow;

  // The weight's elements and packing: int16, each quad of steps as two pairs (layouts.h).
  using Weight = int16_t;
  static constexpr Int8Packing kPacking = Int8Packing::kWidenedPairs;

  // One pixel's four reduction steps 4q .. 4q+3, as the products read them: steps 4q and
  // 4q+2 (even) and 4q+1 and 4q+3 (odd) as two int16 per 32-bit lane, the low or high byte
  // of each 16-bit word of the broadcast quad, zero-extended. The weight's pairs match.
  struct Input {
    Acc even, odd;
  };
  static Input load_input(const uint8_t* p) {
    int32_t quad;
    std::memcpy(&quad, p, sizeof quad);
    const Acc q = _mm256_set1_epi32(quad);
    return {_mm256_and_si256(q, _mm256_set1_epi16(0x00ff)), _mm256_srli_epi16(q, 8)};
  }
  // Vector v (output channels kLanes v ..) of a quad's weights: the even pairs, then the odd.
  struct Weights {
    Acc even, odd;
  };
  static Weights load_weights(const Weight* quad, int v) {
    return {_mm256_loadu_si256(reinterpret_cast<const __m256i*>(quad + 2 * kLanes * v)),
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(quad + 2 * kBlock + 2 * kLanes * v))};
  }
  // acc + the quad's four products per lane, exact in int32 (VPMADDWD's pairs cannot overflow).
  static Acc dot(Acc acc, const Input& x, const Weights& w) {
    return _mm256_add_epi32(_mm256_add_epi32(acc, _mm256_madd_epi16(x.even, w.even)), _mm256_madd_epi16(x.odd, w.odd));
  }
};

}  // namespace
}  // namespace fastresnet::cpu
