// The int8 direct convolution over NHWC uint8 activations, written once against an int8
// vector policy (vec_int8_avx2.h, vec_int8_avx512vnni.h: their products, weight packing and
// epilogue) and compiled per tier, as conv_kernel.h is for float.
//
// The same tiling: a tile of I::kTileRows consecutive output pixels by one block of I::kBlock
// output channels, its sums in registers; the reduction walked as segments that are
// contiguous in memory for every pixel of the tile (a whole kernel row where it lies inside
// the image, else one tap), taken four steps (input channels) at a time. A tap in the padding
// reads a row of the input's zero point, which is what a real zero quantizes to. The sums are
// exact in int32, so unlike the float kernel there are no partial sums to order: a tile runs
// its whole reduction against one block, then the requantizing epilogue, in the order of
// ops/int8_reference.py, and one store of bytes.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>
#include <vector>

namespace fastresnet::cpu {
namespace {

template <class I>
struct Int8Segment {
  const uint8_t* rows[I::kTileRows];  // where each pixel's input for this run starts
  int64_t k0;                         // first reduction index: a multiple of 4
  int64_t length;                     // a multiple of 4
};

struct Int8TileOutput {
  uint8_t* out;             // the tile's first pixel, first channel of the block
  const uint8_t* residual;  // same position in the residual, or null
  const float* multiplier;  // the block's first channel; padded to whole blocks
  const float* bias;
  const int32_t* compensation;
  int64_t stride;    // between pixels: out_c
  int64_t channels;  // valid channels in this block, 1..kBlock
};

template <class I, int Rows, int Vectors>
void int8_tile_kernel(const Int8Segment<I>* segments, int count, const typename I::Weight* panel,
                      const Int8TileOutput& io, const Int8ConvTensors& t) {
  using Acc = typename I::Acc;
  // A quad of reduction steps in the panel: four steps of kBlock channels, as I packs them.
  constexpr int64_t kQuad = 4 * I::kBlock;
  // The sums start at -compensation, which saves the epilogue a subtraction. A partial sum may
  // then pass int32's range, but the products wrap modulo 2^32 and the final sum fits
  // (the op bounds the reduction), so it is the same integer.
  Acc acc[Rows][Vectors];
#pragma GCC unroll 4
  for (int v = 0; v < Vectors; ++v) {
    const Acc start = I::sub(I::zero(), I::load_int32(io.compensation + I::kLanes * v));
#pragma GCC unroll 16
    for (int r = 0; r < Rows; ++r) acc[r][v] = start;
  }

  for (int s = 0; s < count; ++s) {
    const Int8Segment<I>& seg = segments[s];
    const typename I::Weight* w = panel + seg.k0 / 4 * kQuad;
    for (int64_t k = 0; k < seg.length; k += 4, w += kQuad) {
      // The quad's weights first, then each row's input once: on AVX2, GCC merged the two
      // halves' products anyway, and with 6 rows (12 accumulators) it spilled them to the stack.
      typename I::Weights weights[Vectors];
#pragma GCC unroll 4
      for (int v = 0; v < Vectors; ++v) weights[v] = I::load_weights(w, v);
#pragma GCC unroll 16
      for (int r = 0; r < Rows; ++r) {
        const typename I::Input x = I::load_input(seg.rows[r] + k);
#pragma GCC unroll 4
        for (int v = 0; v < Vectors; ++v) acc[r][v] = I::dot(acc[r][v], x, weights[v]);
      }
    }
  }

  // ReLU in the integers: round(max(t, 0)) + zero_point = max(round(t) + zero_point, zero_point).
  const Acc zero_point = I::set1_int32(t.output_zero_point), lowest = I::set1_int32(t.relu ? t.output_zero_point : 0);
  const typename I::F residual_zero_point = I::set1(static_cast<float>(t.residual_zero_point));
  const typename I::F residual_multiplier = I::set1(t.residual_multiplier);
#pragma GCC unroll 4
  for (int v = 0; v < Vectors; ++v) {
    const typename I::F multiplier = I::load(io.multiplier + I::kLanes * v), bias = I::load(io.bias + I::kLanes * v);
    const int64_t valid = std::min<int64_t>(I::kLanes, io.channels - I::kLanes * v);
    // Rows of a whole vector read and write kLanes bytes at once; a block's last, partial
    // vector goes through a buffer. Branching once here, not per row: a copy of variable
    // length per row cost more than the 1x1 convs' whole reduction (measured 6x slower).
    auto requantize_rows = [&](auto whole_vector) {
#pragma GCC unroll 16
      for (int r = 0; r < Rows; ++r) {
        typename I::F y = I::add(I::mul(I::to_float(acc[r][v]), multiplier), bias);
        const int64_t at = r * io.stride + I::kLanes * v;
        if (io.residual != nullptr) {
          uint8_t buffer[I::kLanes] = {};
          const uint8_t* res = io.residual + at;
          if constexpr (!decltype(whole_vector)::value) res = static_cast<const uint8_t*>(std::memcpy(buffer, res, valid));
          y = I::add(y, I::mul(I::sub(I::load_u8(res), residual_zero_point), residual_multiplier));
        }
        const typename I::U8s bytes = I::to_u8(y, zero_point, lowest);
        std::memcpy(io.out + at, &bytes, decltype(whole_vector)::value ? sizeof bytes : valid);
      }
    };
    if (valid == I::kLanes)
      requantize_rows(std::true_type{});
    else
      requantize_rows(std::false_type{});
  }
}

template <class I>
using Int8TileFn = void (*)(const Int8Segment<I>*, int, const typename I::Weight*, const Int8TileOutput&,
                            const Int8ConvTensors&);

template <class I, int... Rows>
Int8TileFn<I> select_int8_tile_fn_from(int rows, int vectors, std::integer_sequence<int, Rows...>) {
  static const Int8TileFn<I> table[][2] = {{&int8_tile_kernel<I, Rows + 1, 1>, &int8_tile_kernel<I, Rows + 1, 2>}...};
  return table[rows - 1][vectors - 1];
}

// Runs pixel tiles against the weight blocks of one item (see run_int8_conv).
template <class I>
class Int8TileRunner {
  static constexpr int kTileRows = I::kTileRows;

 public:
  Int8TileRunner(const ConvShape& s, const Int8ConvTensors& t) : s_(s), t_(t) {
    in_c_g_ = s.in_c_per_group();
    whole_rows_ = s.groups == 1 && s.dilation_w == 1 && t.pixel_stride == s.in_c;  // a kernel row lies contiguous
    // The padding's stand-in: a row of the input's zero point, long enough for a whole kernel row.
    zero_point_row_.assign(s.kernel_w * in_c_g_, static_cast<uint8_t>(t.input_zero_point));
    segments_.resize(s.kernel_h * s.kernel_w);
  }

  void run(int64_t g, int64_t block0, int64_t block1, int64_t m0, int rows, PixelCursor& cursor) {
    const uint8_t* base[kTileRows];
    int64_t y0[kTileRows], x0[kTileRows];
    bool inside_w = true;
    for (int r = 0; r < rows; ++r, cursor.next()) {
      base[r] = t_.input + cursor.n * t_.image_stride + g * in_c_g_;
      y0[r] = cursor.y * s_.stride_h - s_.pad_h;
      x0[r] = cursor.x * s_.stride_w - s_.pad_w;
      inside_w = inside_w && x0[r] >= 0 && x0[r] + (s_.kernel_w - 1) * s_.dilation_w < s_.in_w;
    }
    int count = 0;
    for (int64_t kh = 0; kh < s_.kernel_h; ++kh) {
      const bool whole = whole_rows_ && inside_w;
      for (int64_t kw = 0; kw < (whole ? 1 : s_.kernel_w); ++kw) {
        Int8Segment<I>& seg = segments_[count++];
        for (int r = 0; r < rows; ++r) {
          const int64_t y = y0[r] + kh * s_.dilation_h, x = x0[r] + kw * s_.dilation_w;
          const bool valid = y >= 0 && y < s_.in_h && x >= 0 && x < s_.in_w;
          seg.rows[r] = valid ? base[r] + y * t_.row_stride + x * t_.pixel_stride : zero_point_row_.data();
        }
        seg.k0 = (kh * s_.kernel_w + kw) * in_c_g_;
        seg.length = whole ? s_.kernel_w * in_c_g_ : in_c_g_;
      }
    }
    const int64_t out_c_g = s_.out_c_per_group(), blocks = s_.blocks_per_group();
    for (int64_t b = block0; b < block1; ++b) {
      const int64_t channel = g * out_c_g + b * I::kBlock;
      const int64_t padded = (g * blocks + b) * I::kBlock;  // the per-channel arrays are padded to whole blocks
      Int8TileOutput io{t_.output + m0 * s_.out_c + channel,
                        t_.residual != nullptr ? t_.residual + m0 * s_.out_c + channel : nullptr,
                        t_.multiplier + padded,
                        t_.bias + padded,
                        t_.compensation + padded,
                        s_.out_c,
                        std::min(I::kBlock, out_c_g - b * I::kBlock)};
      // One weight element per reduction step and output channel, in either packing.
      const typename I::Weight* panel =
          static_cast<const typename I::Weight*>(t_.weight) + (g * blocks + b) * s_.reduction() * I::kBlock;
      select_int8_tile_fn_from<I>(rows, io.channels > I::kLanes ? 2 : 1, std::make_integer_sequence<int, kTileRows>{})(
          segments_.data(), count, panel, io, t_);
    }
  }

 private:
  const ConvShape& s_;
  const Int8ConvTensors& t_;
  int64_t in_c_g_;
  bool whole_rows_;
  std::vector<uint8_t> zero_point_row_;
  std::vector<Int8Segment<I>> segments_;
};

// The plan of the float kernel (plan_conv), for the int8 kernel's tile rows and weight elements.
template <class I>
struct Int8PlanIsa {
  static constexpr int kTileRows = I::kTileRows;
  static constexpr int64_t kL2Budget = I::kL2Budget;
};

// The float plan's pixel chunks, each cut in kInt8ChunkSplit where there are tiles for it: the
// threads take the items as they free up (ops.cpp), and finer items even out a thread that
// starts late or runs slower. Measured on Zen 3, 2 threads, whole int8 models interleaved:
// cut in 16, ResNet-18 batch 8 1.05x, ResNet-50 and -18 batch 1 1.09-1.10x; in 4 or 8,
// 1.03-1.07x.
constexpr int64_t kInt8ChunkSplit = 16;

template <class I>
ConvPlan plan_int8_conv(const ConvShape& s, int threads) {
  ConvPlan p = plan_conv<Int8PlanIsa<I>, typename I::Weight>(s, threads);
  p.tiles_per_chunk = ceil_div(p.tiles, std::min(p.tiles, p.chunks * kInt8ChunkSplit));
  p.chunks = ceil_div(p.tiles, p.tiles_per_chunk);
  return p;
}

template <class I>
void run_int8_conv(const ConvShape& s, const Int8ConvTensors& t, const ConvPlan& p, int64_t begin, int64_t end) {
  Int8TileRunner<I> runner(s, t);
  for_each_tile(s, p, I::kTileRows, begin, end, [&](int64_t g, int64_t block0, int64_t block1, int64_t m0, int rows,
                                                    PixelCursor& cursor) { runner.run(g, block0, block1, m0, rows, cursor); });
}

}  // namespace
}  // namespace fastresnet::cpu
