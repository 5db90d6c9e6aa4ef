// Winograd F(2x2, 3x3) and F(4x4, 3x3) over NHWC (see kernels.h), written once against a
// vector type and compiled per tier. Work is cut into chunks of output tiles; for each
// chunk a thread transforms the input tiles into T*T slabs (one per position of the T x T
// transformed tile, tiles x C_in each, T = m + 2), runs the T*T slab x weight products with
// the direct kernel's 1x1 path, and transforms the product slabs back into m x m outputs
// with bias, residual and ReLU before the store. A chunk is large enough that each
// transformed weight slab is reused across many tiles, and small enough that its slabs stay
// near L2. Multiplies per m x m outputs and channel pair: 16 instead of 36 (m = 2), 36
// instead of 144 (m = 4). Needs in_c a multiple of the vector width and out_c of the block.
// The activations may be float or bf16 (Act): they are widened on the input transform's loads
// and rounded once at the output's store; everything between is fp32 (WinogradTensorsOf).
#pragma once

// Standard headers this file uses. Each tier file includes them before its target pragma,
// so these are no-ops there and the library's inline functions keep the generic target.
#include <algorithm>
#include <cstdint>
#include <vector>

namespace fastresnet::cpu {
namespace {

// The 1-D transforms of F(m, 3): input d (T values) -> B^T d; products p (T) -> A^T p (m).
template <class V, int M>
struct WinogradTransform;

template <class V>
struct WinogradTransform<V, 2> {
  using R = typename V::Reg;
  static void input(const R* d, R* t) {
    t[0] = V::sub(d[0], d[2]);
    t[1] = V::add(d[1], d[2]);
    t[2] = V::sub(d[2], d[1]);
    t[3] = V::sub(d[1], d[3]);
  }
  static void output(const R* p, R* y) {
    y[0] = V::add(V::add(p[0], p[1]), p[2]);
    y[1] = V::sub(V::sub(p[1], p[2]), p[3]);
  }
};

// Lavin & Gray's F(4, 3): interpolation points 0, +-1, +-2 and infinity.
template <class V>
struct WinogradTransform<V, 4> {
  using R = typename V::Reg;
  static void input(const R* d, R* t) {
    const R four = V::set1(4.0f), minus4 = V::set1(-4.0f), minus5 = V::set1(-5.0f), two = V::set1(2.0f);
    const R a = V::fma(minus4, d[2], d[4]), b = V::fma(minus4, d[1], d[3]);  // d4 - 4 d2, d3 - 4 d1
    const R c = V::sub(d[4], d[2]), e = V::mul(two, V::sub(d[3], d[1]));   // d4 - d2, 2 (d3 - d1)
    t[0] = V::fma(four, d[0], V::fma(minus5, d[2], d[4]));
    t[1] = V::add(a, b);
    t[2] = V::sub(a, b);
    t[3] = V::add(c, e);
    t[4] = V::sub(c, e);
    t[5] = V::fma(four, d[1], V::fma(minus5, d[3], d[5]));
  }
  static void output(const R* p, R* y) {
    const R sum12 = V::add(p[1], p[2]), diff12 = V::sub(p[1], p[2]);
    const R sum34 = V::add(p[3], p[4]), diff34 = V::sub(p[3], p[4]);
    y[0] = V::add(V::add(p[0], sum12), sum34);
    y[1] = V::fma(V::set1(2.0f), diff34, diff12);
    y[2] = V::fma(V::set1(4.0f), sum34, sum12);
    y[3] = V::add(V::fma(V::set1(8.0f), diff34, diff12), p[5]);
  }
};

struct WinogradTile {
  int64_t n, y, x;  // image, and the tile's top-left output pixel
};

inline WinogradTile winograd_tile_at(const WinogradShape& s, int64_t index) {
  const int64_t tx = index % s.tiles_w(), ty = (index / s.tiles_w()) % s.tiles_h();
  return {index / (s.tiles_w() * s.tiles_h()), s.m * ty, s.m * tx};
}

// V[p][t][c] = (B^T d B)[p] for every vector of channels c of tile t; p = T * row + column.
template <class V, int M, class Act>
void winograd_input(const WinogradShape& s, const Act* input, int64_t first_tile, int64_t tiles, float* v) {
  using Transform = WinogradTransform<V, M>;
  constexpr int T = M + 2;
  const int64_t c_in = s.in_c, slab = tiles * c_in;
  for (int64_t t = 0; t < tiles; ++t) {
    const WinogradTile tile = winograd_tile_at(s, first_tile + t);
    const int64_t y0 = tile.y - s.pad_h, x0 = tile.x - s.pad_w;
    const Act* image = input + tile.n * s.in_h * s.in_w * c_in;
    bool row_ok[T], col_ok[T];
    for (int i = 0; i < T; ++i) {
      row_ok[i] = y0 + i >= 0 && y0 + i < s.in_h;
      col_ok[i] = x0 + i >= 0 && x0 + i < s.in_w;
    }
    for (int64_t c = 0; c < c_in; c += V::kLanes) {
      typename V::Reg d[T][T], column[T], bd[T][T], row[T];
      for (int i = 0; i < T; ++i)
        for (int j = 0; j < T; ++j)
          d[i][j] = row_ok[i] && col_ok[j] ? V::load(image + ((y0 + i) * s.in_w + x0 + j) * c_in + c) : V::zero();
      for (int j = 0; j < T; ++j) {  // B^T d, column by column
        for (int i = 0; i < T; ++i) column[i] = d[i][j];
        Transform::input(column, row);
        for (int i = 0; i < T; ++i) bd[i][j] = row[i];
      }
      float* out = v + t * c_in + c;
      for (int i = 0; i < T; ++i) {  // (B^T d) B, row by row
        Transform::input(bd[i], row);
        for (int j = 0; j < T; ++j) V::store(out + (T * i + j) * slab, row[j]);
      }
    }
  }
}

// Y = A^T P A for each tile and each vector of the `channels` output channels from
// `first_channel` on (P holds just those), then bias, residual, ReLU, and the store of the
// outputs inside the image.
template <class V, int M, class Act>
void winograd_output(const WinogradShape& s, const WinogradTensorsOf<Act>& ts, const float* products, int64_t first_tile,
                     int64_t tiles, int64_t first_channel, int64_t channels) {
  using Transform = WinogradTransform<V, M>;
  constexpr int T = M + 2;
  const int64_t c_out = s.out_c, slab = tiles * channels;
  for (int64_t t = 0; t < tiles; ++t) {
    const WinogradTile tile = winograd_tile_at(s, first_tile + t);
    const int64_t base = ((tile.n * s.out_h + tile.y) * s.out_w + tile.x) * c_out + first_channel;
    const int rows = static_cast<int>(std::min<int64_t>(M, s.out_h - tile.y));
    const int cols = static_cast<int>(std::min<int64_t>(M, s.out_w - tile.x));
    for (int64_t c = 0; c < channels; c += V::kLanes) {
      const float* in = products + t * channels + c;
      typename V::Reg p[T][T], column[T], ap[M][T], y[M];
      for (int k = 0; k < T * T; ++k) p[k / T][k % T] = V::load(in + k * slab);
      for (int j = 0; j < T; ++j) {  // A^T P, column by column
        for (int i = 0; i < T; ++i) column[i] = p[i][j];
        Transform::output(column, y);
        for (int i = 0; i < M; ++i) ap[i][j] = y[i];
      }
      const typename V::Reg bias = V::load(ts.bias + first_channel + c);
      for (int i = 0; i < rows; ++i) {
        Transform::output(ap[i], y);  // (A^T P) A, row by row
        for (int j = 0; j < cols; ++j) {
          const int64_t at = base + (i * s.out_w + j) * c_out + c;
          typename V::Reg out = V::add(y[j], bias);
          if (ts.residual != nullptr) out = V::add(out, V::load(ts.residual + at));
          if (ts.relu) out = V::relu(out);
          V::store(ts.output + at, out);
        }
      }
    }
  }
}

template <class Isa>
WinogradPlan plan_winograd(const WinogradShape& s, int threads) {
  const int64_t workers = std::max(threads, 1), blocks = s.out_c / s.block;
  // Tiles per chunk: weight reuse per slab vs. the slabs' footprint. The same count for
  // F(4x4) as for F(2x2) (36 slabs instead of 16): measured on Zen 4 (16-lane tier), 13 tiles
  // instead of 30 made 128@28 (batch 8) 11% and 256@14 (batch 1) 17% slower.
  const int64_t target = Isa::kWinogradTilesPerChunk;
  WinogradPlan p;
  // Too few tiles to give every thread a full chunk (deep layers at small batch): the threads
  // share the tiles and split the output channels, so each streams only its part of the
  // transformed weight, and reuses it across all the tiles.
  p.ranges = s.tiles() < workers * target / 2 && blocks % workers == 0 ? workers : 1;
  p.blocks_per_range = blocks / p.ranges;
  // Otherwise a whole number of equal chunks per thread, each near the target size.
  p.chunks = p.ranges > 1 ? 1 : std::min(s.tiles(), workers * ceil_div(s.tiles(), workers * target));
  p.tiles_per_chunk = ceil_div(s.tiles(), p.chunks);
  p.chunks = ceil_div(s.tiles(), p.tiles_per_chunk);
  return p;
}

template <class Isa, int M, class Act>
void run_winograd_tiles(const WinogradShape& s, const WinogradTensorsOf<Act>& ts, const WinogradPlan& plan, int64_t begin,
                        int64_t end) {
  using V = typename Isa::V;
  const int64_t positions = s.positions();
  // Per thread, grown once: the transformed input (positions x tiles x C_in) and the products.
  thread_local std::vector<float> scratch;
  const int64_t channels = plan.blocks_per_range * s.block;
  const int64_t v_size = positions * plan.tiles_per_chunk * s.in_c;
  const int64_t m_size = positions * plan.tiles_per_chunk * channels;
  if (scratch.size() < static_cast<size_t>(v_size + m_size)) scratch.resize(v_size + m_size);
  float* v = scratch.data();
  float* m = v + v_size;
  const int64_t blocks = s.out_c / s.block;
  for (int64_t item = begin; item < end; ++item) {
    const int64_t chunk = item / plan.ranges, first_channel = (item % plan.ranges) * channels;
    const int64_t first = chunk * plan.tiles_per_chunk, tiles = std::min(plan.tiles_per_chunk, s.tiles() - first);
    winograd_input<V, M, Act>(s, ts.input, first, tiles, v);
    // Each position's product is a 1x1 conv of `tiles` pixels: the direct kernel, on this thread.
    ConvShape gemm{};
    gemm.batch = gemm.in_h = gemm.out_h = 1;
    gemm.in_w = gemm.out_w = tiles;
    gemm.in_c = s.in_c, gemm.out_c = channels;
    gemm.kernel_h = gemm.kernel_w = gemm.stride_h = gemm.stride_w = gemm.dilation_h = gemm.dilation_w = 1;
    gemm.groups = 1;
    gemm.block = s.block;
    const ConvPlan gemm_plan = plan_conv<Isa, float>(gemm, 1);
    for (int64_t p = 0; p < positions; ++p) {
      // Position p's slab, from the first block of this item's channels: (blocks, C_in, block).
      const float* weight = ts.weight + p * blocks * s.in_c * s.block + first_channel * s.in_c;
      const ConvTensors product{v + p * tiles * s.in_c, weight, nullptr, nullptr, m + p * tiles * channels, false};
      run_conv<Isa>(gemm, product, gemm_plan, 0, gemm_plan.items(gemm));
    }
    winograd_output<V, M, Act>(s, ts, m, first, tiles, first_channel, channels);
  }
}

template <class Isa, class Act>
void run_winograd(const WinogradShape& s, const WinogradTensorsOf<Act>& ts, const WinogradPlan& plan, int64_t begin,
                  int64_t end) {
  if (s.m == 4) {
    run_winograd_tiles<Isa, 4, Act>(s, ts, plan, begin, end);
  } else {
    run_winograd_tiles<Isa, 2, Act>(s, ts, plan, begin, end);
  }
}

}  // namespace
}  // namespace fastresnet::cpu
