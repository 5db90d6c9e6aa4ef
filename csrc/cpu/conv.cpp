// AVX2/FMA direct convolution over NHWC activations (see conv.h for the data layout).
//
// The output is cut into tiles of kTileRows consecutive pixels (flattened over batch, rows
// and columns, so a tile may wrap from one row to the next) by kBlock output channels. A
// tile's 6 x 16 outputs live in 12 ymm accumulators; each step of the reduction loads 16
// weights (2 ymm) and broadcasts one input value per pixel, so 12 FMAs cost 8 loads and the
// loop is bound by the two FMA pipes. The reduction is walked as "segments": runs of
// reduction indices that are contiguous in memory for every pixel of the tile. With NHWC
// input one kernel row (kernel_w taps x C_in) is one segment when the whole row lies inside
// the image; otherwise each tap is its own C_in-long segment, and a tap that falls into the
// padding reads a row of zeros instead, so borders need no branch in the inner loop.
// Bias initialises the accumulators; residual and ReLU are applied in registers before the
// one store.
//
// Compiled for AVX2+FMA by the pragma below (not by a global -mavx2, which would let the
// compiler use AVX2 in code that runs at import). No torch headers here, and the standard
// headers come before the pragma, so the inline functions this file shares with the rest
// of the extension keep the generic target.
#include "conv.h"

#include <algorithm>

#pragma GCC target("avx2,fma")
#include <immintrin.h>

namespace fastresnet::cpu {
namespace {

constexpr int kTileRows = 6;           // pixels per tile: 6 x 2 accumulators + 2 weights + 1 input = 15 ymm
constexpr int kMaxSegments = 64;       // segments gathered before a tile's partial sums are stored
constexpr int64_t kReductionChunk = 256;  // reduction length between partial stores (L1 blocking)
constexpr int64_t kL2Budget = 256 << 10;  // bytes of weight panels kept hot while tiles stream by

// Stands in for input pixels in the padding: a tap outside the image reads zeros.
alignas(64) const float kZeros[kMaxChannelsPerGroup] = {};

struct Segment {
  const float* rows[kTileRows];  // where each pixel's input for this run starts
  int64_t k0;                    // first reduction index (row of the weight panel)
  int64_t length;
};

struct TileOutput {
  float* out;             // the tile's first pixel, first channel of the block
  const float* residual;  // same position in the residual, or null
  const float* bias;      // the block's first channel, or null for zeros
  int64_t stride;         // between pixels: out_c
  int64_t channels;       // valid channels in this block, 1..16
  bool first, last, relu; // first: start from bias (else from out); last: finish and store
};

inline __m256i lane_mask(int64_t valid) {  // lanes [0, valid) of 8
  alignas(32) static const int32_t ramp[8] = {0, 1, 2, 3, 4, 5, 6, 7};
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int32_t>(valid)),
                            _mm256_load_si256(reinterpret_cast<const __m256i*>(ramp)));
}

template <int Rows, int Vectors>
void tile_kernel(const Segment* segments, int count, const float* panel, const TileOutput& io) {
  const bool full = io.channels == Vectors * 8;
  __m256i mask[Vectors];
#pragma GCC unroll 8
  for (int v = 0; v < Vectors; ++v) mask[v] = lane_mask(io.channels - 8 * v);
  auto load = [&](const float* p, int v) { return full ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, mask[v]); };

  __m256 acc[Rows][Vectors];
  if (io.first) {
#pragma GCC unroll 8
    for (int v = 0; v < Vectors; ++v) {
      const __m256 b = io.bias != nullptr ? load(io.bias + 8 * v, v) : _mm256_setzero_ps();
#pragma GCC unroll 8
      for (int r = 0; r < Rows; ++r) acc[r][v] = b;
    }
  } else {
#pragma GCC unroll 8
    for (int r = 0; r < Rows; ++r)
#pragma GCC unroll 8
      for (int v = 0; v < Vectors; ++v) acc[r][v] = load(io.out + r * io.stride + 8 * v, v);
  }

  for (int s = 0; s < count; ++s) {
    const Segment& seg = segments[s];
    const float* a[Rows];
#pragma GCC unroll 8
    for (int r = 0; r < Rows; ++r) a[r] = seg.rows[r];
    const float* w = panel + seg.k0 * kBlock;
    const int64_t length = seg.length;
    for (int64_t k = 0; k < length; ++k, w += kBlock) {
      __m256 wv[Vectors];
#pragma GCC unroll 8
      for (int v = 0; v < Vectors; ++v) wv[v] = _mm256_loadu_ps(w + 8 * v);
#pragma GCC unroll 8
      for (int r = 0; r < Rows; ++r) {
        const __m256 x = _mm256_broadcast_ss(a[r] + k);
#pragma GCC unroll 8
        for (int v = 0; v < Vectors; ++v) acc[r][v] = _mm256_fmadd_ps(x, wv[v], acc[r][v]);
      }
    }
  }

  if (io.last) {
    if (io.residual != nullptr) {
#pragma GCC unroll 8
      for (int r = 0; r < Rows; ++r)
#pragma GCC unroll 8
        for (int v = 0; v < Vectors; ++v)
          acc[r][v] = _mm256_add_ps(acc[r][v], load(io.residual + r * io.stride + 8 * v, v));
    }
    if (io.relu) {
      const __m256 zero = _mm256_setzero_ps();
#pragma GCC unroll 8
      for (int r = 0; r < Rows; ++r)
#pragma GCC unroll 8
        for (int v = 0; v < Vectors; ++v) acc[r][v] = _mm256_max_ps(zero, acc[r][v]);  // NaN stays NaN
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < Rows; ++r) {
#pragma GCC unroll 8
    for (int v = 0; v < Vectors; ++v) {
      float* p = io.out + r * io.stride + 8 * v;
      if (full) {
        _mm256_storeu_ps(p, acc[r][v]);
      } else {
        _mm256_maskstore_ps(p, mask[v], acc[r][v]);
      }
    }
  }
}

using TileFn = void (*)(const Segment*, int, const float*, const TileOutput&);

template <int Rows>
constexpr TileFn tile_fn(int vectors) {
  return vectors == 1 ? &tile_kernel<Rows, 1> : &tile_kernel<Rows, 2>;
}

TileFn select_tile_fn(int rows, int vectors) {
  static const TileFn table[kTileRows][2] = {
      {tile_fn<1>(1), tile_fn<1>(2)}, {tile_fn<2>(1), tile_fn<2>(2)}, {tile_fn<3>(1), tile_fn<3>(2)},
      {tile_fn<4>(1), tile_fn<4>(2)}, {tile_fn<5>(1), tile_fn<5>(2)}, {tile_fn<6>(1), tile_fn<6>(2)},
  };
  return table[rows - 1][vectors - 1];
}

// Walks output pixels in (batch, row, column) order without a division per pixel.
struct PixelCursor {
  int64_t n, y, x;
  const ConvShape& s;
  PixelCursor(const ConvShape& shape, int64_t m) : s(shape) {
    x = m % s.out_w;
    y = (m / s.out_w) % s.out_h;
    n = m / (s.out_w * s.out_h);
  }
  void next() {
    if (++x == s.out_w) {
      x = 0;
      if (++y == s.out_h) y = 0, ++n;
    }
  }
};

// Runs one pixel tile against weight blocks [block0, block1) of group g.
class TileRunner {
 public:
  TileRunner(const ConvShape& s, const ConvTensors& t) : s_(s), t_(t) {
    in_c_g_ = s.in_c_per_group();
    out_c_g_ = s.out_c_per_group();
    k_ = s.reduction();
    blocks_ = s.blocks_per_group();
    // One segment per kernel row needs the row's taps adjacent in memory: one group holding
    // every input channel, no horizontal dilation, and a zero row long enough to stand in.
    whole_rows_ = s.groups == 1 && s.dilation_w == 1 && s.kernel_w * s.in_c <= kMaxChannelsPerGroup;
  }

  void run(int64_t g, int64_t block0, int64_t block1, int64_t m0, int rows, PixelCursor& cursor) {
    g_ = g, block0_ = block0, block1_ = block1, m0_ = m0, rows_ = rows;
    const float* base[kTileRows];
    int64_t y0[kTileRows], x0[kTileRows];
    bool inside_w = true;
    for (int r = 0; r < rows; ++r, cursor.next()) {
      base[r] = t_.input + cursor.n * s_.in_h * s_.in_w * s_.in_c + g * in_c_g_;
      y0[r] = cursor.y * s_.stride_h - s_.pad_h;
      x0[r] = cursor.x * s_.stride_w - s_.pad_w;
      inside_w = inside_w && x0[r] >= 0 && x0[r] + (s_.kernel_w - 1) * s_.dilation_w < s_.in_w;
    }
    count_ = 0;
    pending_ = 0;
    first_ = true;
    const float* starts[kTileRows];
    for (int64_t kh = 0; kh < s_.kernel_h; ++kh) {
      if (whole_rows_ && inside_w) {
        bool any = false;
        for (int r = 0; r < rows; ++r) {
          const int64_t y = y0[r] + kh * s_.dilation_h;
          const bool valid = y >= 0 && y < s_.in_h;
          starts[r] = valid ? base[r] + (y * s_.in_w + x0[r]) * s_.in_c : kZeros;
          any = any || valid;
        }
        if (any) append(starts, kh * s_.kernel_w * in_c_g_, s_.kernel_w * in_c_g_);
        continue;
      }
      for (int64_t kw = 0; kw < s_.kernel_w; ++kw) {
        bool any = false;
        for (int r = 0; r < rows; ++r) {
          const int64_t y = y0[r] + kh * s_.dilation_h, x = x0[r] + kw * s_.dilation_w;
          const bool valid = y >= 0 && y < s_.in_h && x >= 0 && x < s_.in_w;
          starts[r] = valid ? base[r] + (y * s_.in_w + x) * s_.in_c : kZeros;
          any = any || valid;
        }
        if (any) append(starts, (kh * s_.kernel_w + kw) * in_c_g_, in_c_g_);
      }
    }
    flush(/*last=*/true);
  }

 private:
  // Adds reduction indices [k0, k0 + length), read from `starts`, cut so that one flush
  // covers at most kReductionChunk of them: the tile's input and one block's weights for
  // that much stay in L1 while the tile runs against every block of the range.
  void append(const float* const* starts, int64_t k0, int64_t length) {
    for (int64_t done = 0; done < length;) {
      const int64_t piece = std::min(length - done, kReductionChunk - pending_);
      Segment& seg = segments_[count_];
      for (int r = 0; r < rows_; ++r) seg.rows[r] = starts[r] + done;
      seg.k0 = k0 + done;
      seg.length = piece;
      done += piece;
      pending_ += piece;
      if (++count_ == kMaxSegments || pending_ == kReductionChunk) flush(/*last=*/false);
    }
  }

  void flush(bool last) {
    for (int64_t b = block0_; b < block1_; ++b) {
      const int64_t channel = g_ * out_c_g_ + b * kBlock;
      TileOutput io;
      io.out = t_.output + m0_ * s_.out_c + channel;
      io.residual = t_.residual != nullptr ? t_.residual + m0_ * s_.out_c + channel : nullptr;
      io.bias = t_.bias != nullptr ? t_.bias + channel : nullptr;
      io.stride = s_.out_c;
      io.channels = std::min(kBlock, out_c_g_ - b * kBlock);
      io.first = first_;
      io.last = last;
      io.relu = t_.relu;
      const float* panel = t_.weight + (g_ * blocks_ + b) * k_ * kBlock;
      select_tile_fn(rows_, io.channels > 8 ? 2 : 1)(segments_, count_, panel, io);
    }
    count_ = 0;
    pending_ = 0;
    first_ = false;
  }

  const ConvShape& s_;
  const ConvTensors& t_;
  int64_t in_c_g_, out_c_g_, k_, blocks_;
  bool whole_rows_;
  int64_t g_ = 0, block0_ = 0, block1_ = 0, m0_ = 0;
  int rows_ = 0, count_ = 0;
  int64_t pending_ = 0;  // reduction length gathered since the last flush
  bool first_ = true;
  Segment segments_[kMaxSegments];
};

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace

ConvPlan plan_conv(const ConvShape& s, int threads) {
  const int64_t workers = std::max(threads, 1);
  ConvPlan p;
  p.tiles = ceil_div(s.pixels(), kTileRows);
  // The fewest ranges of blocks whose weight panels fit the L2 budget, all of one size.
  const int64_t blocks = s.blocks_per_group();
  const int64_t panel_bytes = s.reduction() * kBlock * static_cast<int64_t>(sizeof(float));
  p.ranges = std::clamp<int64_t>(ceil_div(blocks * panel_bytes, kL2Budget), 1, blocks);
  while (blocks % p.ranges != 0) ++p.ranges;
  p.blocks_per_range = blocks / p.ranges;
  // Then the fewest pixel chunks that give every thread the same number of items: the
  // threads take contiguous runs of items, and more items would load each panel more often.
  const int64_t per_chunk = s.groups * p.ranges;
  int64_t chunks = 1;
  while (chunks < p.tiles && (per_chunk * chunks < workers || (per_chunk * chunks) % workers != 0)) ++chunks;
  p.tiles_per_chunk = ceil_div(p.tiles, chunks);
  p.chunks = ceil_div(p.tiles, p.tiles_per_chunk);
  return p;
}

void run_conv(const ConvShape& s, const ConvTensors& t, const ConvPlan& p, int64_t begin, int64_t end) {
  TileRunner runner(s, t);
  const int64_t pixels = s.pixels();
  for (int64_t item = begin; item < end; ++item) {
    const int64_t chunk = item % p.chunks, range = (item / p.chunks) % p.ranges, g = item / (p.chunks * p.ranges);
    const int64_t block0 = range * p.blocks_per_range;
    const int64_t block1 = std::min(s.blocks_per_group(), block0 + p.blocks_per_range);
    const int64_t tile0 = chunk * p.tiles_per_chunk, tile1 = std::min(p.tiles, tile0 + p.tiles_per_chunk);
    PixelCursor cursor(s, tile0 * kTileRows);
    for (int64_t tile = tile0; tile < tile1; ++tile) {
      const int64_t m0 = tile * kTileRows;
      const int rows = static_cast<int>(std::min<int64_t>(kTileRows, pixels - m0));
      runner.run(g, block0, block1, m0, rows, cursor);
    }
  }
}

}  // namespace fastresnet::cpu
