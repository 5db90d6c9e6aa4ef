// Direct convolution over NHWC activations with a blocked weight, bias, residual and ReLU
// fused into the single store (AVX2/FMA). No torch headers here: this file and conv.cpp are
// compiled for AVX2 while the rest of the extension stays generic x86-64, so that the
// extension still loads on a CPU without AVX2 and says why its CPU kernels cannot run.
#pragma once

#include <cstdint>

namespace fastresnet::cpu {

// Output channels per weight block: two ymm registers of fp32.
constexpr int64_t kBlock = 16;

struct ConvShape {
  int64_t batch, in_h, in_w, in_c;     // input, NHWC
  int64_t out_h, out_w, out_c;         // output, NHWC
  int64_t kernel_h, kernel_w;
  int64_t stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w;
  int64_t groups;

  int64_t in_c_per_group() const { return in_c / groups; }
  int64_t out_c_per_group() const { return out_c / groups; }
  int64_t blocks_per_group() const { return (out_c_per_group() + kBlock - 1) / kBlock; }
  int64_t reduction() const { return kernel_h * kernel_w * in_c_per_group(); }  // K per output
  int64_t pixels() const { return batch * out_h * out_w; }
};

struct ConvTensors {
  const float* input;     // (batch, in_h, in_w, in_c)
  const float* weight;    // (groups, blocks_per_group, kernel_h, kernel_w, in_c/groups, kBlock)
  const float* bias;      // (out_c,), or null for none
  const float* residual;  // (batch, out_h, out_w, out_c), or null
  float* output;          // (batch, out_h, out_w, out_c)
  bool relu;
};

// How the work is split: items are (group, range of weight blocks, chunk of pixel tiles),
// independent of each other, so any thread can take any item.
struct ConvPlan {
  int64_t tiles;             // pixel tiles of kTileRows output pixels
  int64_t tiles_per_chunk;
  int64_t chunks;
  int64_t blocks_per_range;  // weight blocks whose panels share L2 while the tiles stream by
  int64_t ranges;            // per group
  int64_t items(const ConvShape& s) const { return s.groups * ranges * chunks; }
};

// Largest C_in/groups the kernel takes (the zero row that stands in for padding is this long).
constexpr int64_t kMaxChannelsPerGroup = 1 << 16;

ConvPlan plan_conv(const ConvShape& shape, int threads);

// Runs items [begin, end) of `plan`; the caller spreads item ranges over threads.
void run_conv(const ConvShape& shape, const ConvTensors& tensors, const ConvPlan& plan, int64_t begin,
              int64_t end);

}  // namespace fastresnet::cpu
