// Pooling and add + ReLU over NHWC activations, written once against a vector type and
// compiled per tier, for fp32 and bf16 (T: float or Bf16; bf16 is widened to fp32 on load and
// each result rounded once on store): channels are contiguous, so every window tap is a run
// of vector loads; channels past the last whole vector take the masked tail.
#pragma once

// Standard headers this file uses. Each tier file includes them before its target pragma,
// so these are no-ops there and the library's inline functions keep the generic target.
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

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

template <class V, class T>
void max_pool_nhwc(const PoolShape& s, const T* input, T* output, int64_t begin, int64_t end) {
  const int64_t c = s.channels;
  const typename V::Mask tail = V::first_lanes(c % V::kLanes);
  const typename V::Reg lowest = V::set1(-std::numeric_limits<float>::infinity());
  for (int64_t m = begin; m < end; ++m) {
    const int64_t x = m % s.out_w, y = (m / s.out_w) % s.out_h, n = m / (s.out_w * s.out_h);
    const T* image = input + n * s.in_h * s.in_w * c;
    T* out = output + m * c;
    for (int64_t ch = 0; ch < c; ch += V::kLanes) {
      const bool whole = ch + V::kLanes <= c;
      typename V::Reg best = lowest;
      for_each_tap(s, y, x, [&](int64_t pixel) {
        const T* p = image + pixel * c + ch;
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

// The global average pool sums each channel over the pixels in blocks of kPoolBlock pixels,
// one after another, then adds the block sums pairwise (see sum_pixels), so a channel's
// rounding error grows with kPoolBlock + log2(pixels / kPoolBlock) additions, not with the
// pixel count (a 51x42 map: 16 + 8 instead of 2142). kPoolVectors channel vectors are summed
// side by side: independent add chains, and each pixel's channels read as one run.
constexpr int64_t kPoolBlock = 16;
constexpr int kPoolLevels = 40;  // 2^40 blocks of 16 pixels: more than any tensor holds
constexpr int kPoolVectors = 4;

// total[v] = the sum over `pixels` pixels (`stride` floats apart) of the channel vector
// at + v * kLanes (its first `tail` lanes if Masked; then Vectors is 1). The block sums are
// combined as a binary counter counts: a new block sum is added to the held sum of as many
// blocks, and so on up, so every addition adds two sums of the same number of blocks
// (pairwise summation, as torch's cascade sum); what is left held is added smallest first.
// NaN and infinities propagate through the additions.
template <class V, int Vectors, bool Masked, class T>
void sum_pixels(const T* at, int64_t pixels, int64_t stride, typename V::Mask tail,
                typename V::Reg (&total)[Vectors]) {
  using Reg = typename V::Reg;
  static_assert(!Masked || Vectors == 1, "only a single vector takes the tail mask");
  Reg level[kPoolLevels][Vectors];
  uint64_t held = 0;  // bit l: level[l] holds the sum of 2^l blocks
  for (int64_t p0 = 0; p0 < pixels; p0 += kPoolBlock) {
    const int64_t p1 = std::min(pixels, p0 + kPoolBlock);
    Reg sum[Vectors];
#pragma GCC unroll 8
    for (int v = 0; v < Vectors; ++v) sum[v] = V::zero();
    for (int64_t p = p0; p < p1; ++p) {
      const T* pixel = at + p * stride;
#pragma GCC unroll 8
      for (int v = 0; v < Vectors; ++v)
        sum[v] = V::add(sum[v], Masked ? V::load(pixel, tail) : V::load(pixel + V::kLanes * v));
    }
    int l = 0;
    for (; held >> l & 1; ++l) {
#pragma GCC unroll 8
      for (int v = 0; v < Vectors; ++v) sum[v] = V::add(level[l][v], sum[v]);
    }
    ++held;  // counts the blocks: levels below l are emptied into sum, level l now holds it
#pragma GCC unroll 8
    for (int v = 0; v < Vectors; ++v) level[l][v] = sum[v];
  }
#pragma GCC unroll 8
  for (int v = 0; v < Vectors; ++v) total[v] = V::zero();
  for (int l = 0; l < kPoolLevels && held >> l != 0; ++l) {
    if (held >> l & 1) {
#pragma GCC unroll 8
      for (int v = 0; v < Vectors; ++v) total[v] = V::add(total[v], level[l][v]);
    }
  }
}

// Each channel's mean: its sum (above) divided by the pixel count, a true division as in
// torch's mean (not a multiplication by a rounded 1 / pixels), in fp32, then stored as T.
template <class V, class T>
void global_avg_pool_nhwc(const T* input, T* output, int64_t pixels, int64_t channels, int64_t begin, int64_t end) {
  using Reg = typename V::Reg;
  constexpr int64_t kGroup = kPoolVectors * V::kLanes;
  const typename V::Mask tail = V::first_lanes(channels % V::kLanes);
  const float count = static_cast<float>(pixels);
  std::vector<float> sums(channels);
  for (int64_t n = begin; n < end; ++n) {
    const T* image = input + n * pixels * channels;
    float* out = sums.data();
    int64_t ch = 0;
    for (; ch + kGroup <= channels; ch += kGroup) {
      Reg sum[kPoolVectors];
      sum_pixels<V, kPoolVectors, false>(image + ch, pixels, channels, tail, sum);
#pragma GCC unroll 8
      for (int v = 0; v < kPoolVectors; ++v) V::store(out + ch + V::kLanes * v, sum[v]);
    }
    for (; ch < channels; ch += V::kLanes) {
      Reg sum[1];
      if (ch + V::kLanes <= channels) {
        sum_pixels<V, 1, false>(image + ch, pixels, channels, tail, sum);
        V::store(out + ch, sum[0]);
      } else {
        sum_pixels<V, 1, true>(image + ch, pixels, channels, tail, sum);
        V::store(out + ch, sum[0], tail);
      }
    }
    for (int64_t c = 0; c < channels; ++c) {
      if constexpr (std::is_same_v<T, float>) {
        output[n * channels + c] = out[c] / count;
      } else {
        output[n * channels + c] = float_to_bf16(out[c] / count);
      }
    }
  }
}

template <class V, class T>
void add_relu(const T* input, const T* residual, T* output, int64_t begin, int64_t end) {
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
