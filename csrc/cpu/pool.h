// Pooling and add+ReLU over NHWC fp32 activations (AVX2). No torch headers: see conv.h.
#pragma once

#include <cstdint>

namespace fastresnet::cpu {

struct PoolShape {
  int64_t batch, in_h, in_w, channels, out_h, out_w;
  int64_t kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w;
};

// Output pixels [begin, end) (flattened over batch, rows, columns) of a max pool; the padding
// never wins and NaN propagates, as in torch.nn.functional.max_pool2d.
void max_pool_nhwc(const PoolShape& s, const float* input, float* output, int64_t begin, int64_t end);

// Images [begin, end): output (batch, channels) = mean over H x W of an NHWC input.
void global_avg_pool_nhwc(const float* input, float* output, int64_t pixels, int64_t channels, int64_t begin,
                          int64_t end);

// output[i] = max(input[i] + residual[i], 0) for i in [begin, end).
void add_relu(const float* input, const float* residual, float* output, int64_t begin, int64_t end);

}  // namespace fastresnet::cpu
