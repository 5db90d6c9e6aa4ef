// Shape and layout rules shared by the CPU and CUDA implementations of the fused ops; they
// mirror fastresnet/ops/checks.py and fastresnet/ops/meta.py, which the fake kernels use.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

namespace fastresnet {

// The layout contract of every fused op: channels_last in, channels_last out; anything
// else gives a contiguous output.
inline at::MemoryFormat output_format(const at::Tensor& t) {
  return !t.is_contiguous() && t.is_contiguous(at::MemoryFormat::ChannelsLast) ? at::MemoryFormat::ChannelsLast
                                                                                : at::MemoryFormat::Contiguous;
}

inline int64_t conv_output_size(int64_t size, int64_t kernel, int64_t stride, int64_t padding, int64_t dilation) {
  return (size + 2 * padding - dilation * (kernel - 1) - 1) / stride + 1;
}

// As ATen's pooling_output_shape: with ceil_mode the last window must start inside.
inline int64_t pool_output_size(int64_t size, int64_t kernel, int64_t stride, int64_t padding, int64_t dilation,
                                bool ceil_mode) {
  int64_t out = (size + 2 * padding - dilation * (kernel - 1) - 1 + (ceil_mode ? stride - 1 : 0)) / stride + 1;
  if (ceil_mode && (out - 1) * stride >= size + padding) --out;
  return out;
}

}  // namespace fastresnet
