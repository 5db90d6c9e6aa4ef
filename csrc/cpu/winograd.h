// Winograd F(2x2, 3x3) for 3x3 stride-1 convolutions over NHWC (AVX2/FMA; no torch headers,
// see conv.h). Each 2x2 block of outputs comes from a 4x4 input tile: the tile is transformed
// (V = B^T d B), multiplied channel-wise by the transformed weight (M = V U: 16 independent
// GEMMs, one per tile position, run by the direct conv's 1x1 path) and transformed back
// (Y = A^T M A) with bias, residual and ReLU applied before the store. 16 multiplies per
// output pair of channels and 2x2 outputs instead of 36.
#pragma once

#include <cstdint>

#include "conv.h"

namespace fastresnet::cpu {

struct WinogradShape {
  int64_t batch, in_h, in_w, in_c, out_h, out_w, out_c, pad_h, pad_w;
  int64_t tiles_h() const { return (out_h + 1) / 2; }
  int64_t tiles_w() const { return (out_w + 1) / 2; }
  int64_t tiles() const { return batch * tiles_h() * tiles_w(); }
};

// weight: the transformed weight, (4, 4, out_c / 16, in_c, 16): for each of the 16 positions
// of the transformed tile, a 1x1 conv weight blocked as the direct kernel reads it.
// Work items are (chunk of tiles, range of output channels): chunk-major, ranges inner.
struct WinogradPlan {
  int64_t tiles_per_chunk, chunks;  // a chunk's transformed input and products stay near L2
  int64_t blocks_per_range, ranges;  // 16-channel blocks of the output per item
  int64_t items() const { return chunks * ranges; }
};

WinogradPlan plan_winograd(const WinogradShape& shape, int threads);

// Runs items [begin, end); each thread needs its own call (it keeps a scratch buffer).
void run_winograd(const WinogradShape& shape, const ConvTensors& tensors, const WinogradPlan& plan, int64_t begin,
                  int64_t end);

}  // namespace fastresnet::cpu
