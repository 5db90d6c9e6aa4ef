// Max pooling, global average pooling and the standalone add + ReLU, through strides.
// One thread per output element, enumerated in (n, h, w, c) order with c fastest, so that
// NHWC tensors are read and written contiguously. Arithmetic in float32.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>

#include "convert.cuh"
#include "kernels.h"

namespace fastresnet::cuda {
namespace {

constexpr int kThreads = 256;

struct Index4 {
  int64_t n, c, h, w;
};

__device__ inline Index4 nhwc_index(int64_t i, const View4& v) {
  Index4 x;
  x.c = i % v.c;
  x.w = (i / v.c) % v.w;
  x.h = (i / (v.c * v.w)) % v.h;
  x.n = i / (v.c * v.w * v.h);
  return x;
}

__device__ inline int64_t offset(const View4& v, int64_t n, int64_t c, int64_t h, int64_t w) {
  return n * v.sn + c * v.sc + h * v.sh + w * v.sw;
}

template <typename T>
__global__ void max_pool2d_kernel(View4 in, View4 out, int kh, int kw, int sh, int sw, int ph, int pw, int dh,
                                  int dw) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= out.n * out.c * out.h * out.w) return;
  const Index4 o = nhwc_index(i, out);
  const T* x = static_cast<const T*>(in.data);
  float best = -INFINITY;
  for (int a = 0; a < kh; ++a) {
    const int64_t ih = o.h * sh - ph + a * dh;
    if (ih < 0 || ih >= in.h) continue;
    for (int b = 0; b < kw; ++b) {
      const int64_t iw = o.w * sw - pw + b * dw;
      if (iw < 0 || iw >= in.w) continue;
      const float v = to_float(x[offset(in, o.n, o.c, ih, iw)]);
      if (v > best || isnan(v)) best = v;  // NaN wins, as in torch.max_pool2d
      if (isnan(best)) break;
    }
  }
  static_cast<T*>(out.data)[offset(out, o.n, o.c, o.h, o.w)] = from_float<T>(best);
}

template <typename T>
__global__ void global_avg_pool_kernel(View4 in, T* out) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= in.n * in.c) return;
  const int64_t n = i / in.c, c = i % in.c;
  const T* x = static_cast<const T*>(in.data);
  float total = 0.f;
  for (int64_t h = 0; h < in.h; ++h)
    for (int64_t w = 0; w < in.w; ++w) total += to_float(x[offset(in, n, c, h, w)]);
  out[i] = from_float<T>(total / static_cast<float>(in.h * in.w));
}

template <typename T>
__global__ void add_relu_kernel(View4 a, View4 b, View4 out) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= out.n * out.c * out.h * out.w) return;
  const Index4 o = nhwc_index(i, out);
  float v = to_float(static_cast<const T*>(a.data)[offset(a, o.n, o.c, o.h, o.w)]) +
            to_float(static_cast<const T*>(b.data)[offset(b, o.n, o.c, o.h, o.w)]);
  if (v < 0.f) v = 0.f;  // NaN stays NaN
  static_cast<T*>(out.data)[offset(out, o.n, o.c, o.h, o.w)] = from_float<T>(v);
}

unsigned blocks_for(int64_t count) { return static_cast<unsigned>((count + kThreads - 1) / kThreads); }

// Calls launch<T>() with the C++ type of dtype.
template <typename Launch>
cudaError_t dispatch(DType dtype, Launch&& launch) {
  switch (dtype) {
    case DType::Float32:
      launch(float{});
      break;
    case DType::Float16:
      launch(__half{});
      break;
    case DType::BFloat16:
      launch(__nv_bfloat16{});
      break;
  }
  return cudaGetLastError();
}

}  // namespace

cudaError_t max_pool2d(DType dtype, const View4& input, const View4& output, int kh, int kw, int stride_h,
                       int stride_w, int pad_h, int pad_w, int dil_h, int dil_w, cudaStream_t stream) {
  const int64_t count = output.n * output.c * output.h * output.w;
  if (count == 0) return cudaSuccess;
  return dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    max_pool2d_kernel<T><<<blocks_for(count), kThreads, 0, stream>>>(input, output, kh, kw, stride_h, stride_w,
                                                                    pad_h, pad_w, dil_h, dil_w);
  });
}

cudaError_t global_avg_pool(DType dtype, const View4& input, void* output, cudaStream_t stream) {
  const int64_t count = input.n * input.c;
  if (count == 0) return cudaSuccess;
  return dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    global_avg_pool_kernel<T><<<blocks_for(count), kThreads, 0, stream>>>(input, static_cast<T*>(output));
  });
}

cudaError_t add_relu(DType dtype, const View4& input, const View4& residual, const View4& output,
                     cudaStream_t stream) {
  const int64_t count = output.n * output.c * output.h * output.w;
  if (count == 0) return cudaSuccess;
  return dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    add_relu_kernel<T><<<blocks_for(count), kThreads, 0, stream>>>(input, residual, output);
  });
}

}  // namespace fastresnet::cuda
