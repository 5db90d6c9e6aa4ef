// Pooling and add + ReLU over NHWC fp32 activations, written once against a vector type and
// compiled per tier: channels are contiguous, so every window tap is a run of vector loads;
// channels past the last whole vector take the masked tail.
#pragma once

// Standard headers this file uses. Each tier file includes them before its target pragma,
// so these are no-ops there and the library's inline functions keep the generic target.
#include <cstdint>
#include <limits>

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

template <class V>
void max_pool_nhwc(const PoolShape& s, const float* input, float* output, int64_t begin, int64_t end) {
  const int64_t c = s.channels;
  const typename V::Mask tail = V::first_lanes(c % V::kLanes);
  const typename V::Reg lowest = V::set1(-std::numeric_limits<float>::infinity());
  for (int64_t m = begin; m < end; ++m) {
    const int64_t x = m % s.out_w, y = (m / s.out_w) % s.out_h, n = m / (s.out_w * s.out_h);
    const float* image = input + n * s.in_h * s.in_w * c;
    float* out = output + m * c;
    for (int64_t ch = 0; ch < c; ch += V::kLanes) {
      const bool whole = ch + V::kLanes <= c;
      typename V::Reg best = lowest;
      for_each_tap(s, y, x, [&](int64_t pixel) {
        const float* p = image + pixel * c + ch;
        best = V::max_keep_nan(best, whole ? V::load(p) : V::load(p, tail));
      });
      if (whole) {
        V::store(out + ch, best);
      } else {
        V::store(out + ch, best, tail);
      }
    }
  }
}

template <class V>
void global_avg_pool_nhwc(const float* input, float* output, int64_t pixels, int64_t channels, int64_t begin,
                          int64_t end) {
  const typename V::Reg scale = V::set1(1.0f / static_cast<float>(pixels));
  const typename V::Mask tail = V::first_lanes(channels % V::kLanes);
  for (int64_t n = begin; n < end; ++n) {
    const float* image = input + n * pixels * channels;
    float* out = output + n * channels;
    for (int64_t ch = 0; ch < channels; ch += V::kLanes) {
      const bool whole = ch + V::kLanes <= channels;
      typename V::Reg sum = V::zero();
      for (int64_t p = 0; p < pixels; ++p) {
        const float* at = image + p * channels + ch;
        sum = V::add(sum, whole ? V::load(at) : V::load(at, tail));
      }
      if (whole) {
        V::store(out + ch, V::mul(sum, scale));
      } else {
        V::store(out + ch, V::mul(sum, scale), tail);
      }
    }
  }
}

template <class V>
void add_relu(const float* input, const float* residual, float* output, int64_t begin, int64_t end) {
  int64_t i = begin;
  for (; i + V::kLanes <= end; i += V::kLanes) {
    V::store(output + i, V::relu(V::add(V::load(input + i), V::load(residual + i))));
  }
  if (i < end) {
    const typename V::Mask tail = V::first_lanes(end - i);
    V::store(output + i, V::relu(V::add(V::load(input + i, tail), V::load(residual + i, tail))), tail);
  }
}


}  // namespace
}  // namespace fastresnet::cpu
