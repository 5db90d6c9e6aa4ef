// Pooling and add+ReLU kernels over NHWC: channels are contiguous, so every window tap is a
// run of 8-wide vector loads. Compiled for AVX2 by the pragma, as conv.cpp.
#include "pool.h"

#include <cmath>
#include <limits>

#pragma GCC target("avx2,fma")
#include <immintrin.h>

namespace fastresnet::cpu {

namespace {

// Calls visit(offset) with the pixel offset (in pixels, within the image) of every tap of
// output pixel (y, x)'s window that lies inside the input: the padding never takes part.
template <typename Visit>
inline void for_each_tap(const PoolShape& s, int64_t y, int64_t x, Visit visit) {
  for (int64_t kh = 0; kh < s.kernel_h; ++kh) {
    const int64_t iy = y * s.stride_h - s.pad_h + kh * s.dilation_h;
    if (iy < 0 || iy >= s.in_h) continue;
    for (int64_t kw = 0; kw < s.kernel_w; ++kw) {
      const int64_t ix = x * s.stride_w - s.pad_w + kw * s.dilation_w;
      if (ix >= 0 && ix < s.in_w) visit(iy * s.in_w + ix);
    }
  }
}

}  // namespace

void max_pool_nhwc(const PoolShape& s, const float* input, float* output, int64_t begin, int64_t end) {
  const int64_t c = s.channels;
  const __m256 lowest = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  for (int64_t m = begin; m < end; ++m) {
    const int64_t x = m % s.out_w, y = (m / s.out_w) % s.out_h, n = m / (s.out_w * s.out_h);
    const float* image = input + n * s.in_h * s.in_w * c;
    float* out = output + m * c;
    int64_t ch = 0;
    for (; ch + 8 <= c; ch += 8) {
      __m256 best = lowest;
      __m256 nan = _mm256_setzero_ps();  // lanes that saw a NaN (all bits set)
      for_each_tap(s, y, x, [&](int64_t pixel) {
        const __m256 v = _mm256_loadu_ps(image + pixel * c + ch);
        best = _mm256_max_ps(v, best);
        nan = _mm256_or_ps(nan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
      });
      _mm256_storeu_ps(out + ch, _mm256_blendv_ps(best, _mm256_set1_ps(NAN), nan));
    }
    for (; ch < c; ++ch) {
      float best = -std::numeric_limits<float>::infinity();
      for_each_tap(s, y, x, [&](int64_t pixel) {
        const float v = image[pixel * c + ch];
        if (v > best || std::isnan(v)) best = v;
      });
      out[ch] = best;
    }
  }
}

void global_avg_pool_nhwc(const float* input, float* output, int64_t pixels, int64_t channels, int64_t begin,
                          int64_t end) {
  const float scale = 1.0f / static_cast<float>(pixels);
  for (int64_t n = begin; n < end; ++n) {
    const float* image = input + n * pixels * channels;
    float* out = output + n * channels;
    int64_t ch = 0;
    for (; ch + 8 <= channels; ch += 8) {
      __m256 sum = _mm256_setzero_ps();
      for (int64_t p = 0; p < pixels; ++p) sum = _mm256_add_ps(sum, _mm256_loadu_ps(image + p * channels + ch));
      _mm256_storeu_ps(out + ch, _mm256_mul_ps(sum, _mm256_set1_ps(scale)));
    }
    for (; ch < channels; ++ch) {
      float sum = 0.0f;
      for (int64_t p = 0; p < pixels; ++p) sum += image[p * channels + ch];
      out[ch] = sum * scale;
    }
  }
}

void add_relu(const float* input, const float* residual, float* output, int64_t begin, int64_t end) {
  const __m256 zero = _mm256_setzero_ps();
  int64_t i = begin;
  for (; i + 8 <= end; i += 8) {
    const __m256 v = _mm256_add_ps(_mm256_loadu_ps(input + i), _mm256_loadu_ps(residual + i));
    _mm256_storeu_ps(output + i, _mm256_max_ps(zero, v));  // NaN stays NaN, as torch.relu
  }
  for (; i < end; ++i) {
    const float v = input[i] + residual[i];
    output[i] = v > 0.0f || std::isnan(v) ? v : 0.0f;
  }
}

}  // namespace fastresnet::cpu
