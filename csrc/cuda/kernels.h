// The CUDA kernels' interface: plain pointers, sizes and strides, no torch headers, so the
// .cu files compile quickly with nvcc alone (and can be compile-checked on their own).
#pragma once

#include <cstdint>

#include <cuda_runtime.h>

namespace fastresnet::cuda {

enum class DType { Float32, Float16, BFloat16 };

// A 4-D tensor viewed as logical (N, C, H, W) with arbitrary element strides.
struct View4 {
  void* data;
  int64_t n, c, h, w;
  int64_t sn, sc, sh, sw;
};

struct ConvArgs {
  View4 input;       // (N, C_in, H, W)
  View4 weight;      // (C_out, C_in / groups, KH, KW)
  const void* bias;  // (C_out,), contiguous
  View4 residual;    // like the output; data == nullptr when there is none
  View4 output;      // (N, C_out, OH, OW)
  int stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups;
  bool relu;
};

// Each returns the launch error (cudaSuccess when the launch was queued).
cudaError_t conv2d_bias_act(DType dtype, const ConvArgs& args, cudaStream_t stream);
cudaError_t max_pool2d(DType dtype, const View4& input, const View4& output, int kh, int kw, int stride_h,
                       int stride_w, int pad_h, int pad_w, int dil_h, int dil_w, cudaStream_t stream);
// output: (N, C) contiguous.
cudaError_t global_avg_pool(DType dtype, const View4& input, void* output, cudaStream_t stream);
cudaError_t add_relu(DType dtype, const View4& input, const View4& residual, const View4& output,
                     cudaStream_t stream);

}  // namespace fastresnet::cuda
