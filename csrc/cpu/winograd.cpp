// Winograd F(2x2, 3x3) over NHWC (see winograd.h). Work is cut into chunks of output tiles;
// for each chunk a thread transforms the input tiles into 16 slabs (one per position of the
// 4x4 transformed tile, tiles x C_in each), runs the 16 slab x weight products with the
// direct kernel's 1x1 path, and transforms the 16 product slabs back into 2x2 outputs. A
// chunk is large enough that each transformed weight slab is reused across many tiles, and
// small enough that its slabs stay near L2. Compiled for AVX2+FMA by the pragma, as conv.cpp.
#include "winograd.h"

#include <algorithm>
#include <vector>

#pragma GCC target("avx2,fma")
#include <immintrin.h>

namespace fastresnet::cpu {
namespace {

constexpr int64_t kTargetTilesPerChunk = 30;  // weight reuse per slab vs. slab footprint

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

struct Tile {
  int64_t n, y, x;  // image, and the tile's top-left output pixel
};

Tile tile_at(const WinogradShape& s, int64_t index) {
  const int64_t tx = index % s.tiles_w(), ty = (index / s.tiles_w()) % s.tiles_h(), n = index / (s.tiles_w() * s.tiles_h());
  return {n, 2 * ty, 2 * tx};
}

// V[p][t][c] = (B^T d B)[p] for every 8 channels c of tile t; p = 4 * row + column.
void transform_input(const WinogradShape& s, const float* input, int64_t first_tile, int64_t tiles, float* v) {
  const int64_t c_in = s.in_c, slab = tiles * c_in;
  const __m256 zero = _mm256_setzero_ps();
  for (int64_t t = 0; t < tiles; ++t) {
    const Tile tile = tile_at(s, first_tile + t);
    const int64_t y0 = tile.y - s.pad_h, x0 = tile.x - s.pad_w;
    const float* image = input + tile.n * s.in_h * s.in_w * c_in;
    bool row_ok[4], col_ok[4];
    for (int i = 0; i < 4; ++i) {
      row_ok[i] = y0 + i >= 0 && y0 + i < s.in_h;
      col_ok[i] = x0 + i >= 0 && x0 + i < s.in_w;
    }
    for (int64_t c = 0; c < c_in; c += 8) {
      __m256 d[4][4];
      for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 4; ++j)
          d[i][j] = row_ok[i] && col_ok[j] ? _mm256_loadu_ps(image + ((y0 + i) * s.in_w + x0 + j) * c_in + c) : zero;
      __m256 bd[4][4];  // B^T d
      for (int j = 0; j < 4; ++j) {
        bd[0][j] = _mm256_sub_ps(d[0][j], d[2][j]);
        bd[1][j] = _mm256_add_ps(d[1][j], d[2][j]);
        bd[2][j] = _mm256_sub_ps(d[2][j], d[1][j]);
        bd[3][j] = _mm256_sub_ps(d[1][j], d[3][j]);
      }
      float* out = v + t * c_in + c;
      for (int i = 0; i < 4; ++i) {  // (B^T d) B
        _mm256_storeu_ps(out + (4 * i + 0) * slab, _mm256_sub_ps(bd[i][0], bd[i][2]));
        _mm256_storeu_ps(out + (4 * i + 1) * slab, _mm256_add_ps(bd[i][1], bd[i][2]));
        _mm256_storeu_ps(out + (4 * i + 2) * slab, _mm256_sub_ps(bd[i][2], bd[i][1]));
        _mm256_storeu_ps(out + (4 * i + 3) * slab, _mm256_sub_ps(bd[i][1], bd[i][3]));
      }
    }
  }
}

// Y = A^T M A for each tile and 8 of the `channels` output channels from `first_channel` on
// (M holds just those), then bias, residual, ReLU, and the store of the outputs inside the image.
void transform_output(const WinogradShape& s, const ConvTensors& ts, const float* m, int64_t first_tile,
                      int64_t tiles, int64_t first_channel, int64_t channels) {
  const int64_t c_out = s.out_c, slab = tiles * channels;
  const __m256 zero = _mm256_setzero_ps();
  for (int64_t t = 0; t < tiles; ++t) {
    const Tile tile = tile_at(s, first_tile + t);
    const int64_t base = ((tile.n * s.out_h + tile.y) * s.out_w + tile.x) * c_out + first_channel;
    const bool inside[2][2] = {{true, tile.x + 1 < s.out_w},
                               {tile.y + 1 < s.out_h, tile.y + 1 < s.out_h && tile.x + 1 < s.out_w}};
    for (int64_t c = 0; c < channels; c += 8) {
      const float* in = m + t * channels + c;
      __m256 p[4][4];
      for (int k = 0; k < 16; ++k) p[k / 4][k % 4] = _mm256_loadu_ps(in + k * slab);
      __m256 r[2][4];  // A^T M
      for (int j = 0; j < 4; ++j) {
        r[0][j] = _mm256_add_ps(_mm256_add_ps(p[0][j], p[1][j]), p[2][j]);
        r[1][j] = _mm256_sub_ps(_mm256_sub_ps(p[1][j], p[2][j]), p[3][j]);
      }
      const __m256 bias = _mm256_loadu_ps(ts.bias + first_channel + c);
      for (int i = 0; i < 2; ++i) {
        __m256 y[2];  // (A^T M) A
        y[0] = _mm256_add_ps(_mm256_add_ps(r[i][0], r[i][1]), r[i][2]);
        y[1] = _mm256_sub_ps(_mm256_sub_ps(r[i][1], r[i][2]), r[i][3]);
        for (int j = 0; j < 2; ++j) {
          if (!inside[i][j]) continue;
          const int64_t at = base + (i * s.out_w + j) * c_out + c;
          __m256 out = _mm256_add_ps(y[j], bias);
          if (ts.residual != nullptr) out = _mm256_add_ps(out, _mm256_loadu_ps(ts.residual + at));
          if (ts.relu) out = _mm256_max_ps(zero, out);  // NaN stays NaN
          _mm256_storeu_ps(ts.output + at, out);
        }
      }
    }
  }
}

}  // namespace

WinogradPlan plan_winograd(const WinogradShape& s, int threads) {
  const int64_t workers = std::max(threads, 1), blocks = s.out_c / kBlock;
  WinogradPlan p;
  // Too few tiles to give every thread a full chunk (deep layers at small batch): the threads
  // share the tiles and split the output channels, so each streams only its part of the
  // transformed weight, and reuses it across all the tiles.
  p.ranges = s.tiles() < workers * kTargetTilesPerChunk / 2 && blocks % workers == 0 ? workers : 1;
  p.blocks_per_range = blocks / p.ranges;
  // Otherwise a whole number of equal chunks per thread, each near the target size.
  p.chunks = p.ranges > 1 ? 1 : std::min(s.tiles(), workers * ceil_div(s.tiles(), workers * kTargetTilesPerChunk));
  p.tiles_per_chunk = ceil_div(s.tiles(), p.chunks);
  p.chunks = ceil_div(s.tiles(), p.tiles_per_chunk);
  return p;
}

void run_winograd(const WinogradShape& s, const ConvTensors& ts, const WinogradPlan& plan, int64_t begin,
                  int64_t end) {
  // Per thread, grown once: the transformed input (16 x tiles x C_in) and the products.
  thread_local std::vector<float> scratch;
  const int64_t channels = plan.blocks_per_range * kBlock;
  const int64_t v_size = 16 * plan.tiles_per_chunk * s.in_c, m_size = 16 * plan.tiles_per_chunk * channels;
  if (scratch.size() < static_cast<size_t>(v_size + m_size)) scratch.resize(v_size + m_size);
  float* v = scratch.data();
  float* m = v + v_size;
  const int64_t blocks = s.out_c / kBlock;
  for (int64_t item = begin; item < end; ++item) {
    const int64_t chunk = item / plan.ranges, first_channel = (item % plan.ranges) * channels;
    const int64_t first = chunk * plan.tiles_per_chunk, tiles = std::min(plan.tiles_per_chunk, s.tiles() - first);
    transform_input(s, ts.input, first, tiles, v);
    // Each position's product is a 1x1 conv of `tiles` pixels: the direct kernel, on this thread.
    ConvShape gemm{};
    gemm.batch = gemm.in_h = gemm.out_h = 1;
    gemm.in_w = gemm.out_w = tiles;
    gemm.in_c = s.in_c, gemm.out_c = channels;
    gemm.kernel_h = gemm.kernel_w = gemm.stride_h = gemm.stride_w = gemm.dilation_h = gemm.dilation_w = 1;
    gemm.groups = 1;
    const ConvPlan gemm_plan = plan_conv(gemm, 1);
    for (int64_t p = 0; p < 16; ++p) {
      // Position p's slab, from the first block of this item's channels: (blocks, C_in, 16).
      const float* weight = ts.weight + p * blocks * s.in_c * kBlock + first_channel * s.in_c;
      const ConvTensors product{v + p * tiles * s.in_c, weight, nullptr, nullptr, m + p * tiles * channels, false};
      run_conv(gemm, product, gemm_plan, 0, gemm_plan.items(gemm));
    }
    transform_output(s, ts, m, first, tiles, first_channel, channels);
  }
}

}  // namespace fastresnet::cpu
