// The CPU kernels' shapes and the table of one instruction-set tier: what it needs, its
// algorithm limits and its kernels. No torch headers and no intrinsics here: the kernels
// themselves (conv_kernel.h, winograd_kernel.h, pool_kernel.h, and the FMA probe in
// tier_table.h) are templates over a vector type, compiled once per tier by tier_<name>.cpp
// with that tier's target flags, which registers the tier; tiers.cpp picks one at run time.
#pragma once

#include <cstdint>

namespace fastresnet::cpu {

struct ConvShape {
  int64_t batch, in_h, in_w, in_c;     // input, NHWC
  int64_t out_h, out_w, out_c;         // output, NHWC
  int64_t kernel_h, kernel_w;
  int64_t stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w;
  int64_t groups;
  int64_t block;  // output channels per weight block: the tier's CpuTier::block

  int64_t in_c_per_group() const { return in_c / groups; }
  int64_t out_c_per_group() const { return out_c / groups; }
  int64_t blocks_per_group() const { return (out_c_per_group() + block - 1) / block; }
  int64_t reduction() const { return kernel_h * kernel_w * in_c_per_group(); }  // K per output
  int64_t pixels() const { return batch * out_h * out_w; }
};

// A bfloat16 value: the high half of a float32's bits (its own type, so that the vector
// types' loads and stores overload on it). Kernels read bf16 widened to fp32 (exact) and
// store fp32 results rounded once, to nearest even, NaN kept (bf16.h).
struct Bf16 {
  uint16_t bits;
};

// T: the activations' element type (float or Bf16); the weight and bias are of the same.
// In: the input's, T or, for a bf16 conv on a tier that widens (CpuTier::bf16_widens), the
// input widened to fp32 by the op (run_conv_bf16_widened).
// A float32 weight is (groups, blocks_per_group, kernel_h, kernel_w, in_c/groups, block).
// A bf16 one, on a tier with bf16 dot products, pairs its reduction steps, (..., in_c/groups /
// 2, block, 2): for each pair of steps, every output channel's two values side by side, as
// VDPBF16PS (and AMX's B tiles) read them; on a tier that widens, it pairs the block's two
// vectors instead, (..., in_c/groups, block / 2, 2): channel j with channel j + block / 2, so
// that one load widens into both weight vectors of a step (layouts.h, "blocked-bf16-widened").
template <class T, class In = T>
struct ConvTensorsOf {
  const In* input;    // (batch, in_h, in_w, in_c)
  const T* weight;
  const T* bias;      // (out_c,), or null for none
  const T* residual;  // (batch, out_h, out_w, out_c), or null
  T* output;          // (batch, out_h, out_w, out_c)
  bool relu;
};
using ConvTensors = ConvTensorsOf<float>;
using ConvTensorsBf16 = ConvTensorsOf<Bf16>;
using ConvTensorsBf16Widened = ConvTensorsOf<Bf16, float>;

// How the work is split: items are (group, range of weight blocks, chunk of pixel tiles),
// independent of each other, so any thread can take any item.
struct ConvPlan {
  int64_t tiles;             // pixel tiles of the tier's tile rows
  int64_t tiles_per_chunk;
  int64_t chunks;
  int64_t blocks_per_range;  // weight blocks whose panels share L2 while the tiles stream by
  int64_t ranges;            // per group
  bool stream_weights;       // few tiles per panel: prefetch the panel ahead of the reduction
  int64_t items(const ConvShape& s) const { return s.groups * ranges * chunks; }
};

// Largest C_in/groups the direct kernel takes (the zero row that stands in for padding is this long).
constexpr int64_t kMaxChannelsPerGroup = 1 << 16;

// Winograd F(m x m, 3x3) for 3x3 stride-1 convs: each m x m block of outputs comes from an
// (m+2) x (m+2) input tile, transformed (V = B^T d B), multiplied channel-wise by the
// transformed weight (one GEMM per tile position, run by the direct kernel's 1x1 path) and
// transformed back (Y = A^T M A) with bias, residual and ReLU before the store.
struct WinogradShape {
  int64_t batch, in_h, in_w, in_c, out_h, out_w, out_c, pad_h, pad_w;
  int64_t m;      // output tile: 2 for F(2x2, 3x3), 4 for F(4x4, 3x3)
  int64_t block;  // output channels per weight block: the tier's CpuTier::block

  int64_t tile() const { return m + 2; }              // input tile side
  int64_t positions() const { return tile() * tile(); }  // GEMMs per chunk of tiles
  int64_t tiles_h() const { return (out_h + m - 1) / m; }
  int64_t tiles_w() const { return (out_w + m - 1) / m; }
  int64_t tiles() const { return batch * tiles_h() * tiles_w(); }
};

// The weight: (tile, tile, out_c / block, in_c, block), for each position of the transformed
// tile a 1x1 conv weight blocked as the direct kernel reads it. Work items are (chunk of
// tiles, range of output channels): chunk-major, ranges inner.
// Its tensors: activations, bias and residual of type T (float or Bf16), the transformed
// weight float32 in either case. U = G g G^T needs more bits than bf16 holds (g is a bf16
// weight, rounded once, in a bf16 model), and the transformed input and the products stay
// in fp32 too, so bf16 Winograd rounds only where direct bf16 does: at the store.
template <class T>
struct WinogradTensorsOf {
  const T* input;     // (batch, in_h, in_w, in_c)
  const float* weight;
  const T* bias;      // (out_c,)
  const T* residual;  // (batch, out_h, out_w, out_c), or null
  T* output;          // (batch, out_h, out_w, out_c)
  bool relu;
};

struct WinogradPlan {
  int64_t tiles_per_chunk, chunks;   // a chunk's transformed input and products stay near L2
  int64_t blocks_per_range, ranges;  // weight blocks of the output per item
  int64_t items() const { return chunks * ranges; }
};

// How an int8 conv reads its weight (layouts.h): per quad of reduction steps, kWidenedPairs
// (int16, AVX2's VPMADDWD: the even steps' pair of every output channel, then the odd) or
// kQuads (int8, VPDPBUSD and VPMADDUBSW: each channel's four steps).
enum class Int8Packing { kWidenedPairs, kQuads };

// The int8 conv (int8_conv_kernel.h): uint8 NHWC activations with one (scale, zero point) per
// tensor, the weight in an int8 layout (layouts.h), int32 sums and the float32 requantizing
// epilogue of ops/int8_reference.py. ConvShape::in_c counts the input's channels padded to a
// multiple of 4 per group (the reduction runs four steps at a time; the weight is zero there),
// ConvShape::block is the kernels' Int8Kernels::block.
struct Int8ConvTensors {
  const uint8_t* input;          // (batch, in_h, in_w, in_c)
  // Bytes between the input's pixels, rows and images: in_c, in_w x in_c and in_h x in_w x in_c
  // for an NHWC tensor; a conv read as row windows (ops.cpp) gives a view whose pixels overlap.
  int64_t pixel_stride, row_stride, image_stride;
  const void* weight;            // in the kernels' Int8Packing: int16 or int8, one element per step and channel
  const float* multiplier;       // per output channel, padded with zeros to whole blocks per group
  const float* bias;             // the same
  const int32_t* compensation;   // the same
  const uint8_t* residual;       // (batch, out_h, out_w, out_c), or null
  float residual_multiplier;
  int32_t residual_zero_point, input_zero_point, output_zero_point;
  uint8_t* output;               // (batch, out_h, out_w, out_c)
  bool relu;
};

// One int8 conv kernel of a tier, from one int8 vector policy (vec_int8_*.h): how it
// multiplies, for explain(), the largest |weight| it takes exactly, its output channels per
// weight block and weight packing, its plan and kernel (as CpuTier::plan_conv and run_conv),
// and its peak probe: kFmaChains chains of its dot products (four u8 x s8 products per int32
// lane, block / 2 lanes), the ceiling it is measured against. run is null where a tier has
// no such kernel.
struct Int8Kernels {
  const char* name;
  int weight_bound;
  int64_t block;
  Int8Packing packing;
  ConvPlan (*plan)(const ConvShape& shape, int threads);
  void (*run)(const ConvShape& shape, const Int8ConvTensors& tensors, const ConvPlan& plan, int64_t begin,
              int64_t end);
  float (*dot_chains)(int64_t iterations);
};

struct PoolShape {
  int64_t batch, in_h, in_w, channels, out_h, out_w;
  int64_t kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w;
};

// Independent FMA chains per thread in the peak probe: enough to cover the FMA latency on
// two pipes for either tier.
constexpr int kFmaChains = 12;

// What a tier is, besides its kernels: written once, in its tier_<name>.cpp.
struct TierFacts {
  const char* name;      // FASTRESNET_CPU_ISA's value, and the prefix of the tier's weight layouts
  const char* features;  // what the CPU must have, as /proc/cpuinfo names it, space-separated
  const char* os_state;  // the register state the OS must save (XGETBV): "ymm" or "zmm"
  int rank;              // when the CPU runs several tiers, the highest rank is chosen
  const char* dtypes;    // the activation dtypes its kernels take, space-separated
  // Winograd per layer, by C_out x C_in: F(4x4,3x3) up to the first, F(2x2,3x3) above it up
  // to the second, direct beyond (0: never). Measured per tier; the figures are in its file.
  int64_t winograd4x4_max_channels;
  int64_t winograd2x2_max_channels;
  // What the CPU must have, besides `features`, for the tier's bf16 dot-product probe
  // (CpuTier::bf16_dot_chains); null where the tier has none.
  const char* bf16_dot_features = nullptr;
  // The same two limits for bf16 activations, where they differ (-1: as in fp32). A tier
  // with bf16 dot products runs direct bf16 convs at twice its fp32 rate, while its
  // Winograd products stay fp32 (WinogradTensorsOf): Winograd pays off on fewer layers.
  int64_t bf16_winograd4x4_max_channels = -1;
  int64_t bf16_winograd2x2_max_channels = -1;

  int64_t winograd4x4_limit(bool bf16) const {
    return bf16 && bf16_winograd4x4_max_channels >= 0 ? bf16_winograd4x4_max_channels : winograd4x4_max_channels;
  }
  int64_t winograd2x2_limit(bool bf16) const {
    return bf16 && bf16_winograd2x2_max_channels >= 0 ? bf16_winograd2x2_max_channels : winograd2x2_max_channels;
  }
};

// One instruction-set tier: its facts and its kernels, all from the same templates.
struct CpuTier {
  TierFacts facts;
  int64_t lanes;  // fp32 lanes per vector
  int64_t block;  // output channels per weight block: two vectors
  const char* bf16_conv;  // how its bf16 convs multiply, for explain()

  const char* name() const { return facts.name; }

  ConvPlan (*plan_conv)(const ConvShape& shape, int threads);
  // Runs items [begin, end) of `plan`; the caller spreads item ranges over threads.
  void (*run_conv)(const ConvShape& shape, const ConvTensors& tensors, const ConvPlan& plan, int64_t begin,
                   int64_t end);
  WinogradPlan (*plan_winograd)(const WinogradShape& shape, int threads);
  // Runs items [begin, end); each thread keeps its own scratch buffer.
  void (*run_winograd)(const WinogradShape& shape, const WinogradTensorsOf<float>& tensors, const WinogradPlan& plan,
                       int64_t begin, int64_t end);
  // Output pixels [begin, end) (flattened over batch, rows, columns) of a max pool over NHWC;
  // the padding never wins and NaN propagates, as in torch.nn.functional.max_pool2d.
  void (*max_pool)(const PoolShape& shape, const float* input, float* output, int64_t begin, int64_t end);
  // Images [begin, end): output (batch, channels) = mean over H x W of an NHWC input.
  void (*global_avg_pool)(const float* input, float* output, int64_t pixels, int64_t channels, int64_t begin,
                          int64_t end);
  // output[i] = max(input[i] + residual[i], 0) for i in [begin, end), NaN kept.
  void (*add_relu)(const float* input, const float* residual, float* output, int64_t begin, int64_t end);
  // The same in bfloat16: fp32 arithmetic inside, each output rounded once. Where the tier
  // has bf16 dot products (TierFacts::bf16_dot_features) the conv's reduction takes its steps
  // in pairs, by VDPBF16PS (in_c/groups even). Where it has none (bf16_widens) the conv is the
  // float kernel on the input widened to fp32, with the weights widened in registers and the
  // output rounded at the store; the input widened per tile by run_conv_bf16, or once per call
  // by the op for run_conv_bf16_widened (null on tiers with dot products).
  bool bf16_widens;
  ConvPlan (*plan_conv_bf16)(const ConvShape& shape, int threads);
  void (*run_conv_bf16)(const ConvShape& shape, const ConvTensorsBf16& tensors, const ConvPlan& plan, int64_t begin,
                        int64_t end);
  void (*run_conv_bf16_widened)(const ConvShape& shape, const ConvTensorsBf16Widened& tensors, const ConvPlan& plan,
                                int64_t begin, int64_t end);
  void (*max_pool_bf16)(const PoolShape& shape, const Bf16* input, Bf16* output, int64_t begin, int64_t end);
  void (*global_avg_pool_bf16)(const Bf16* input, Bf16* output, int64_t pixels, int64_t channels, int64_t begin,
                               int64_t end);
  void (*add_relu_bf16)(const Bf16* input, const Bf16* residual, Bf16* output, int64_t begin, int64_t end);
  // Winograd over bf16 activations, with plan_winograd's plan (WinogradTensorsOf).
  void (*run_winograd_bf16)(const WinogradShape& shape, const WinogradTensorsOf<Bf16>& tensors,
                            const WinogradPlan& plan, int64_t begin, int64_t end);
  // The int8 conv, for any int8 weight, and where the tier has one a faster form for weights
  // within its narrower bound (AVX2's VPMADDUBSW: vec_int8_avx2.h), each with its own layout.
  Int8Kernels int8;
  Int8Kernels int8_narrow;
  // kFmaChains chains of `iterations` vector FMAs on this thread; returns a value that
  // depends on them all, so they cannot be optimised away.
  float (*fma_chains)(int64_t iterations);
  // The same with bf16 dot products into fp32 (two products per lane per instruction), or
  // null: the peak that bf16 kernels are measured against. Needs facts.bf16_dot_features.
  float (*bf16_dot_chains)(int64_t iterations);
};

}  // namespace fastresnet::cpu
