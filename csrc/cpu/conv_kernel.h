// Direct convolution over NHWC activations with a blocked weight (see kernels.h for the data
// layout), written once against a vector type and compiled per tier (tier_<name>.cpp).
//
// The output is cut into tiles of Isa::kTileRows consecutive pixels (flattened over batch,
// rows and columns, so a tile may wrap from one row to the next) by one block of output
// channels (two vectors). A tile's outputs live in 2 x kTileRows accumulator registers;
// each step of the reduction loads the block's weights (2 vectors) and broadcasts one input
// value per pixel, so the loop is bound by the FMA pipes. The reduction is walked as
// "segments": runs of reduction indices that are contiguous in memory for every pixel of the
// tile. With NHWC input one kernel row (kernel_w taps x C_in) is one segment when the whole
// row lies inside the image; otherwise each tap is its own C_in-long segment, and a tap that
// falls into the padding reads a row of zeros instead, so borders need no branch in the
// inner loop. The accumulators start at zero; bias, residual and ReLU are applied in
// registers before the one store (see tile_kernel for why the bias comes last).
//
// The same code runs bfloat16 (T = Bf16): activations and weights in bf16, accumulation and
// epilogue in fp32, one rounding at the store; partial sums between flushes go to an fp32
// scratch, not the output. The reduction takes its steps in pairs by a bf16 dot product where
// the vector type has one; elsewhere it reads the input widened to fp32 (see kWidensInput).
//
// Isa: using V (the vector type); kTileRows; kReductionChunk (reduction length between
// partial stores); kL2Budget (bytes of weight panels kept hot while tiles stream by);
// kWinogradTilesPerChunk (winograd_kernel.h). Everything is in an unnamed namespace: each
// tier's translation unit has its own copy, compiled for its own instruction set.
#pragma once

// Standard headers this file uses. Each tier file includes them before its target pragma,
// so these are no-ops there and the library's inline functions keep the generic target.
#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <utility>
#include <vector>

namespace fastresnet::cpu {
namespace {

constexpr int kMaxSegments = 64;     // segments gathered before a tile's partial sums are stored
constexpr int64_t kStreamTiles = 8;  // see plan_conv
// Reduction steps per partial sum within a flush (see tile_kernel). Measured on a shared
// 2-core Xeon (noisy): within 0-3% of no partial sums on the AVX-512 3x3 layers, no slower
// on AVX2 or the 1x1 layers; 512 measured alike.
constexpr int64_t kFoldChunk = 256;

// Stands in for input pixels in the padding: a tap outside the image reads zeros.
alignas(64) const float kZeros[kMaxChannelsPerGroup] = {};

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Whether vector type V has a bf16 dot product (V::dot_pairs, e.g. VDPBF16PS); without one,
// bf16 reductions widen to fp32 (reduce_segment).
template <class V>
concept HasDotPairs = requires(typename V::Reg r) { V::dot_pairs(r, r, r); };

// bf16 on a vector type without V::dot_pairs: the tile kernel reads its input widened to fp32,
// so that the inner loop is the float kernel's, fp32 broadcasts against weight vectors, with
// only the weights, loaded once per step for all rows, widened in registers: a layout that
// pairs the block's two vectors ("blocked-bf16-widened") gives both from one load, by a shift
// and a mask. The input is widened either by the op, once per call (ConvTensorsOf's In is
// float), or by the runner, per tile and flush into a scratch the flush's blocks share
// (TileRunner::tile_segments): the op picks (widens_whole_input). Widening each broadcast pair
// in the inner loop instead made GCC spill half the accumulators on AVX2 (BENCHMARKS.md).
template <class Isa, class T>
constexpr bool kWidensInput = std::is_same_v<T, Bf16> && !HasDotPairs<typename Isa::V>;

// The input type the tile kernel reads: T, or fp32 where the input is widened.
template <class Isa, class T>
using TileInput = std::conditional_t<kWidensInput<Isa, T>, float, T>;

template <class Isa, class T>
struct Segment {
  const T* rows[Isa::kTileRows];      // where each pixel's input for this run starts
  int64_t k0;                         // first reduction index (row of the weight panel)
  int64_t length;
  bool fold;                          // a partial sum of kFoldChunk steps ends with this run
};

template <class T>
struct TileOutput {
  T* out;                 // the tile's first pixel, first channel of the block
  const T* residual;      // same position in the residual, or null
  const T* bias;          // the block's first channel, or null for zeros
  int64_t stride;         // between pixels: out_c
  float* partial;         // where partial sums go between flushes: `out` itself for fp32
  int64_t partial_stride; // between pixels there
  int64_t channels;       // valid channels in this block, 1..block
  bool first, last, relu; // first: no partial sum stored yet (else add out's); last: bias, finish, store
  bool stream_weights;    // ConvPlan::stream_weights
};

// acc[r][v] += sum over the segment's reduction indices of input(r, k) * weight(k, v).
// In fp32 each step broadcasts one input value per row against the block's two weight
// vectors. bf16 with a dot product (V::dot_pairs, VDPBF16PS: two products per lane into fp32)
// takes two indices per step, k and k + 1, adjacent in the input and paired in the weight;
// bf16 without one (kWidensInput) steps as fp32 does, on the widened input, the step's two
// weight vectors the low and high halves of one load of pairs, each an exact fp32.
// Prefetch: also request the panel kPrefetchBytes ahead of the loads, for panels that
// stream through the tile once from memory and measured faster with it (see plan_conv;
// why the hardware prefetcher falls behind there was not measured).
template <class Isa, class T, int Rows, int Vectors, bool Prefetch>
void reduce_segment(const Segment<Isa, TileInput<Isa, T>>& seg, const T* panel,
                    typename Isa::V::Reg (&acc)[Rows][Vectors]) {
  using V = typename Isa::V;
  using Reg = typename V::Reg;
  constexpr int64_t kBlock = 2 * V::kLanes;
  constexpr int64_t kStep = std::is_same_v<T, Bf16> && HasDotPairs<V> ? 2 : 1;  // reduction indices per step
  constexpr int64_t kPrefetchBytes = 3072, kLine = 64;
  const TileInput<Isa, T>* a[Rows];
#pragma GCC unroll 16
  for (int r = 0; r < Rows; ++r) a[r] = seg.rows[r];
  const T* w = panel + seg.k0 * kBlock;
  for (int64_t k = 0; k < seg.length; k += kStep, w += kStep * kBlock) {
    if constexpr (Prefetch) {
#pragma GCC unroll 4
      for (int64_t byte = 0; byte < kStep * kBlock * static_cast<int64_t>(sizeof(T)); byte += kLine)
        __builtin_prefetch(reinterpret_cast<const char*>(w) + kPrefetchBytes + byte, 0, 3);
    }
    Reg wv[Vectors];
    if constexpr (kStep == 1) {
      if constexpr (kWidensInput<Isa, T>) {  // lane j: channel j in the low half, j + kLanes in the high
        const Reg pairs = V::load_pairs(w);
        wv[0] = V::low_of_pairs(pairs);
        if constexpr (Vectors == 2) wv[1] = V::high_of_pairs(pairs);
      } else {
#pragma GCC unroll 8
        for (int v = 0; v < Vectors; ++v) wv[v] = V::load(w + V::kLanes * v);
      }
#pragma GCC unroll 16
      for (int r = 0; r < Rows; ++r) {
        const Reg x = V::broadcast(a[r] + k);
#pragma GCC unroll 8
        for (int v = 0; v < Vectors; ++v) acc[r][v] = V::fma(x, wv[v], acc[r][v]);
      }
    } else {
#pragma GCC unroll 8
      for (int v = 0; v < Vectors; ++v) wv[v] = V::load_pairs(w + kStep * V::kLanes * v);
#pragma GCC unroll 16
      for (int r = 0; r < Rows; ++r) {
        const Reg x = V::broadcast_pair(a[r] + k);
#pragma GCC unroll 8
        for (int v = 0; v < Vectors; ++v) acc[r][v] = V::dot_pairs(acc[r][v], x, wv[v]);
      }
    }
  }
}

template <class Isa, class T, int Rows, int Vectors>
void tile_kernel(const Segment<Isa, TileInput<Isa, T>>* segments, int count, const T* panel, const TileOutput<T>& io) {
  using V = typename Isa::V;
  const bool full = io.channels == Vectors * V::kLanes;
  typename V::Mask mask[Vectors];
#pragma GCC unroll 8
  for (int v = 0; v < Vectors; ++v) mask[v] = V::first_lanes(io.channels - V::kLanes * v);
  auto load = [&](const auto* p, int v) { return full ? V::load(p) : V::load(p, mask[v]); };

  // The epilogue's residual and output lines, requested now so that they arrive while the
  // reduction runs: where the reduction is short and the map is larger than the caches
  // (1x1 64->256 at 56x56, batch 8), the end of each tile otherwise stalls on them.
  if (io.last) {
#pragma GCC unroll 16
    for (int r = 0; r < Rows; ++r)
#pragma GCC unroll 8
      for (int v = 0; v < Vectors; ++v) {
        if (io.residual != nullptr) __builtin_prefetch(io.residual + r * io.stride + V::kLanes * v, 0, 3);
        if (io.first) __builtin_prefetch(io.out + r * io.stride + V::kLanes * v, 1, 3);
      }
  }
  // The order of the sum, chosen for accuracy at no extra memory traffic: a flush's steps
  // are summed in partial sums of kFoldChunk steps, each from zero, added in order into
  // `held` (which may live on the stack: the inner loop never touches it); then the sum of
  // the flushes before (stored in the output) is added, and at the very end the bias.
  // Started from the bias and from the stored sum, as this kernel did before, every step
  // rounded at the magnitude of that start: 1.4-2.8x oneDNN's error against float64 with
  // unit biases, up to 7x with larger ones; one running sum per flush (up to
  // kReductionChunk steps) was still up to 3x oneDNN's on small maps, where oneDNN splits
  // its reduction. Now 0.1-1.3x oneDNN's (tests/test_cpu_accuracy.py; the table in
  // BENCHMARKS.md). Cost: Rows x Vectors adds per kFoldChunk steps, and a segment cut
  // where a run crosses a fold (TileRunner::append).
  typename V::Reg acc[Rows][Vectors], held[Rows][Vectors];
#pragma GCC unroll 16
  for (int r = 0; r < Rows; ++r)
#pragma GCC unroll 8
    for (int v = 0; v < Vectors; ++v) acc[r][v] = V::zero();
  bool holding = false;

  for (int s = 0; s < count; ++s) {
    if (io.stream_weights) {
      reduce_segment<Isa, T, Rows, Vectors, true>(segments[s], panel, acc);
    } else {
      reduce_segment<Isa, T, Rows, Vectors, false>(segments[s], panel, acc);
    }
    if (segments[s].fold && s + 1 < count) {
#pragma GCC unroll 16
      for (int r = 0; r < Rows; ++r)
#pragma GCC unroll 8
        for (int v = 0; v < Vectors; ++v) {
          held[r][v] = holding ? V::add(held[r][v], acc[r][v]) : acc[r][v];
          acc[r][v] = V::zero();
        }
      holding = true;
    }
  }
  if (holding) {
#pragma GCC unroll 16
    for (int r = 0; r < Rows; ++r)
#pragma GCC unroll 8
      for (int v = 0; v < Vectors; ++v) acc[r][v] = V::add(held[r][v], acc[r][v]);
  }

  if (!io.first) {
#pragma GCC unroll 16
    for (int r = 0; r < Rows; ++r)
#pragma GCC unroll 8
      for (int v = 0; v < Vectors; ++v)
        acc[r][v] = V::add(load(io.partial + r * io.partial_stride + V::kLanes * v, v), acc[r][v]);
  }
  if (io.last) {
    if (io.bias != nullptr) {
#pragma GCC unroll 8
      for (int v = 0; v < Vectors; ++v) {
        const typename V::Reg b = load(io.bias + V::kLanes * v, v);
#pragma GCC unroll 16
        for (int r = 0; r < Rows; ++r) acc[r][v] = V::add(acc[r][v], b);
      }
    }
    if (io.residual != nullptr) {
#pragma GCC unroll 16
      for (int r = 0; r < Rows; ++r)
#pragma GCC unroll 8
        for (int v = 0; v < Vectors; ++v)
          acc[r][v] = V::add(acc[r][v], load(io.residual + r * io.stride + V::kLanes * v, v));
    }
    if (io.relu) {
#pragma GCC unroll 16
      for (int r = 0; r < Rows; ++r)
#pragma GCC unroll 8
        for (int v = 0; v < Vectors; ++v) acc[r][v] = V::relu(acc[r][v]);
    }
  }
  // The result in the output's type; a partial sum in fp32 (the output itself for fp32).
  auto store_all = [&](auto* to, int64_t stride) {
#pragma GCC unroll 16
    for (int r = 0; r < Rows; ++r) {
#pragma GCC unroll 8
      for (int v = 0; v < Vectors; ++v) {
        auto* p = to + r * stride + V::kLanes * v;
        if (full) {
          V::store(p, acc[r][v]);
        } else {
          V::store(p, acc[r][v], mask[v]);
        }
      }
    }
  };
  if (io.last) {
    store_all(io.out, io.stride);
  } else {
    store_all(io.partial, io.partial_stride);
  }
}

template <class Isa, class T>
using TileFn = void (*)(const Segment<Isa, TileInput<Isa, T>>*, int, const T*, const TileOutput<T>&);

// tile_kernel<Isa, T, rows, vectors> for rows in 1..kTileRows, vectors in 1..2.
template <class Isa, class T, int... Rows>
TileFn<Isa, T> select_tile_fn_from(int rows, int vectors, std::integer_sequence<int, Rows...>) {
  static const TileFn<Isa, T> table[][2] = {{&tile_kernel<Isa, T, Rows + 1, 1>, &tile_kernel<Isa, T, Rows + 1, 2>}...};
  return table[rows - 1][vectors - 1];
}

template <class Isa, class T>
TileFn<Isa, T> select_tile_fn(int rows, int vectors) {
  return select_tile_fn_from<Isa, T>(rows, vectors, std::make_integer_sequence<int, Isa::kTileRows>{});
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

// Runs one pixel tile against weight blocks [block0, block1) of group g, on an input of
// type In: T, or for bf16 on a vector type without dot products the input widened to fp32.
template <class Isa, class T, class In>
class TileRunner {
  static constexpr int kTileRows = Isa::kTileRows;
  using Read = TileInput<Isa, T>;  // what the tile kernel reads
  static constexpr bool kWidensTiles = !std::is_same_v<In, Read>;  // bf16 input the kernel reads widened

 public:
  TileRunner(const ConvShape& s, const ConvTensorsOf<T, In>& t, bool stream, int64_t blocks_per_range)
      : s_(s), t_(t), stream_(stream) {
    in_c_g_ = s.in_c_per_group();
    out_c_g_ = s.out_c_per_group();
    k_ = s.reduction();
    blocks_ = s.blocks_per_group();
    // One segment per kernel row needs the row's taps adjacent in memory: one group holding
    // every input channel, no horizontal dilation, and a zero row long enough to stand in.
    whole_rows_ = s.groups == 1 && s.dilation_w == 1 && s.kernel_w * s.in_c <= kMaxChannelsPerGroup;
    // bf16 keeps its partial sums in fp32, here: a tile's outputs for each block of a range.
    if constexpr (!std::is_same_v<T, float>) partial_.resize(blocks_per_range * kTileRows * s.block);
    if constexpr (kWidensTiles) widened_.resize(kTileRows * Isa::kReductionChunk);
  }

  void run(int64_t g, int64_t block0, int64_t block1, int64_t m0, int rows, PixelCursor& cursor) {
    g_ = g, block0_ = block0, block1_ = block1, m0_ = m0, rows_ = rows;
    const In* base[kTileRows];
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
    const In* starts[kTileRows];
    for (int64_t kh = 0; kh < s_.kernel_h; ++kh) {
      if (whole_rows_ && inside_w) {
        bool any = false;
        for (int r = 0; r < rows; ++r) {
          const int64_t y = y0[r] + kh * s_.dilation_h;
          const bool valid = y >= 0 && y < s_.in_h;
          starts[r] = valid ? base[r] + (y * s_.in_w + x0[r]) * s_.in_c : zeros();
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
          starts[r] = valid ? base[r] + (y * s_.in_w + x) * s_.in_c : zeros();
          any = any || valid;
        }
        if (any) append(starts, (kh * s_.kernel_w + kw) * in_c_g_, in_c_g_);
      }
    }
    flush(/*last=*/true);
  }

 private:
  // Adds reduction indices [k0, k0 + length), read from `starts`, cut so that one flush
  // covers at most kReductionChunk of them (and kMaxSegments runs), and so that a segment
  // ends at every kFoldChunk-th index of a flush (tile_kernel folds its partial sums there);
  // a flush runs the tile against every block of the range, storing partial sums unless it
  // is the last.
  static const In* zeros() { return reinterpret_cast<const In*>(kZeros); }  // zero bits: 0 in either type

  void append(const In* const* starts, int64_t k0, int64_t length) {
    for (int64_t done = 0; done < length;) {
      const int64_t piece =
          std::min({length - done, Isa::kReductionChunk - pending_, kFoldChunk - pending_ % kFoldChunk});
      Segment<Isa, In>& seg = segments_[count_];
      for (int r = 0; r < rows_; ++r) seg.rows[r] = starts[r] + done;
      seg.k0 = k0 + done;
      seg.length = piece;
      done += piece;
      pending_ += piece;
      seg.fold = pending_ % kFoldChunk == 0;
      if (++count_ == kMaxSegments || pending_ == Isa::kReductionChunk) flush(/*last=*/false);
    }
  }

  // The segments as the tile kernel reads them: these, or their rows widened to fp32 into
  // widened_ (a flush holds at most kReductionChunk reduction indices per row).
  const Segment<Isa, Read>* tile_segments() {
    if constexpr (!kWidensTiles) {
      return segments_;
    } else {
      using V = typename Isa::V;
      float* to = widened_.data();
      for (int s = 0; s < count_; ++s) {
        const Segment<Isa, In>& from = segments_[s];
        Segment<Isa, Read>& seg = widened_segments_[s];
        seg.k0 = from.k0, seg.length = from.length, seg.fold = from.fold;
        for (int r = 0; r < rows_; ++r, to += from.length) {
          seg.rows[r] = to;
          int64_t k = 0;
          for (; k + V::kLanes <= from.length; k += V::kLanes) V::store(to + k, V::load(from.rows[r] + k));
          for (; k < from.length; ++k) to[k] = bf16_to_float(from.rows[r][k]);
        }
      }
      return widened_segments_;
    }
  }

  void flush(bool last) {
    const int64_t block = s_.block;
    const Segment<Isa, Read>* segments = tile_segments();
    for (int64_t b = block0_; b < block1_; ++b) {
      const int64_t channel = g_ * out_c_g_ + b * block;
      TileOutput<T> io;
      io.out = t_.output + m0_ * s_.out_c + channel;
      if constexpr (std::is_same_v<T, float>) {
        io.partial = io.out, io.partial_stride = s_.out_c;
      } else {
        io.partial = partial_.data() + (b - block0_) * kTileRows * block, io.partial_stride = block;
      }
      io.residual = t_.residual != nullptr ? t_.residual + m0_ * s_.out_c + channel : nullptr;
      io.bias = t_.bias != nullptr ? t_.bias + channel : nullptr;
      io.stride = s_.out_c;
      io.channels = std::min(block, out_c_g_ - b * block);
      io.first = first_;
      io.last = last;
      io.relu = t_.relu;
      io.stream_weights = stream_;
      const T* panel = t_.weight + (g_ * blocks_ + b) * k_ * block;
      select_tile_fn<Isa, T>(rows_, io.channels > block / 2 ? 2 : 1)(segments, count_, panel, io);
    }
    count_ = 0;
    pending_ = 0;
    first_ = false;
  }

  const ConvShape& s_;
  const ConvTensorsOf<T, In>& t_;
  int64_t in_c_g_, out_c_g_, k_, blocks_;
  bool whole_rows_;
  bool stream_;
  int64_t g_ = 0, block0_ = 0, block1_ = 0, m0_ = 0;
  int rows_ = 0, count_ = 0;
  int64_t pending_ = 0;  // reduction length gathered since the last flush
  bool first_ = true;
  Segment<Isa, In> segments_[kMaxSegments];
  std::vector<float> partial_;  // bf16 only
  // Where the runner widens (kWidensTiles): the segments and rows the kernel reads.
  std::conditional_t<kWidensTiles, Segment<Isa, Read>[kMaxSegments], char> widened_segments_;
  std::vector<float> widened_;
};

template <class Isa, class T>
ConvPlan plan_conv(const ConvShape& s, int threads) {
  const int64_t workers = std::max(threads, 1);
  ConvPlan p;
  p.tiles = ceil_div(s.pixels(), Isa::kTileRows);
  // The fewest ranges of blocks whose weight panels fit the L2 budget, all of one size.
  const int64_t blocks = s.blocks_per_group();
  const int64_t panel_bytes = s.reduction() * s.block * static_cast<int64_t>(sizeof(T));
  p.ranges = std::clamp<int64_t>(ceil_div(blocks * panel_bytes, Isa::kL2Budget), 1, blocks);
  while (blocks % p.ranges != 0) ++p.ranges;
  p.blocks_per_range = blocks / p.ranges;
  // Then the fewest pixel chunks that give every thread the same number of items: the
  // threads take contiguous runs of items, and more items would load each panel more often.
  const int64_t per_chunk = s.groups * p.ranges;
  int64_t chunks = 1;
  while (chunks < p.tiles && (per_chunk * chunks < workers || (per_chunk * chunks) % workers != 0)) ++chunks;
  p.tiles_per_chunk = ceil_div(p.tiles, chunks);
  p.chunks = ceil_div(p.tiles, p.tiles_per_chunk);
  // A panel met by only a few tiles per item is read from memory more than from L2: the
  // kernel prefetches it. Measured on Zen 4 with 12-row tiles, ResNet-50 batch 1: the 7x7
  // layers' 1x1 convs (5 tiles) 7-10% faster, the Winograd products of 256@14 and 512@7
  // (2 tiles) 5-9%; the 1x1 convs at 14x14 and above (17 tiles or more) 1-3% slower.
  p.stream_weights = p.tiles_per_chunk <= kStreamTiles;
  return p;
}

// Calls run(g, block0, block1, m0, rows, cursor) for each pixel tile, of tile_rows pixels,
// of items [begin, end) of `p`: the walk the float and int8 kernels share.
template <class Run>
void for_each_tile(const ConvShape& s, const ConvPlan& p, int tile_rows, int64_t begin, int64_t end, Run&& run) {
  const int64_t pixels = s.pixels();
  for (int64_t item = begin; item < end; ++item) {
    const int64_t chunk = item % p.chunks, range = (item / p.chunks) % p.ranges, g = item / (p.chunks * p.ranges);
    const int64_t block0 = range * p.blocks_per_range;
    const int64_t block1 = std::min(s.blocks_per_group(), block0 + p.blocks_per_range);
    const int64_t tile0 = chunk * p.tiles_per_chunk, tile1 = std::min(p.tiles, tile0 + p.tiles_per_chunk);
    PixelCursor cursor(s, tile0 * tile_rows);
    for (int64_t tile = tile0; tile < tile1; ++tile) {
      const int64_t m0 = tile * tile_rows;
      const int rows = static_cast<int>(std::min<int64_t>(tile_rows, pixels - m0));
      run(g, block0, block1, m0, rows, cursor);
    }
  }
}

template <class Isa, class T, class In = T>
void run_conv(const ConvShape& s, const ConvTensorsOf<T, In>& t, const ConvPlan& p, int64_t begin, int64_t end) {
  TileRunner<Isa, T, In> runner(s, t, p.stream_weights, p.blocks_per_range);
  for_each_tile(s, p, Isa::kTileRows, begin, end, [&](int64_t g, int64_t block0, int64_t block1, int64_t m0, int rows,
                                                      PixelCursor& cursor) { runner.run(g, block0, block1, m0, rows, cursor); });
}

}  // namespace
}  // namespace fastresnet::cpu
