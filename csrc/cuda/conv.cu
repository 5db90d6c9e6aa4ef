// Implicit-GEMM convolution with the fused epilogue, for GPUs without a working Triton.
//
// GEMM view: M = N*OH*OW output pixels, N = C_out/groups, K = KH*KW*C_in/groups ordered
// (kh, kw, c) with c fastest, so NHWC activations are read along contiguous channels.
// A block computes a 64x64 output tile of one group. Tiles of A (implicit im2col, zero
// padding by bounds checks) and B (weights) are staged in shared memory; float16 and
// bfloat16 multiply on tensor cores through WMMA with a float32 accumulator, float32 on
// CUDA cores. The epilogue adds the bias and optional residual, applies the optional ReLU
// and casts, before the single store.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <mma.h>

#include "convert.cuh"
#include "kernels.h"

namespace fastresnet::cuda {
namespace {

constexpr int kTileM = 64;
constexpr int kTileN = 64;

struct GemmShape {
  int64_t m;  // N * OH * OW
  int n;      // C_out / groups
  int k;      // KH * KW * C_in / groups
  int c_in_g, kw, oh, ow;
};

__host__ __device__ inline GemmShape gemm_shape(const ConvArgs& a) {
  GemmShape s;
  s.c_in_g = static_cast<int>(a.weight.c);
  s.kw = static_cast<int>(a.weight.w);
  s.oh = static_cast<int>(a.output.h);
  s.ow = static_cast<int>(a.output.w);
  s.m = a.output.n * a.output.h * a.output.w;
  s.n = static_cast<int>(a.output.c / a.groups);
  s.k = static_cast<int>(a.weight.h * a.weight.w) * s.c_in_g;
  return s;
}

// Reduction index k -> (input channel, kernel row, kernel column), channel fastest.
struct KIndex {
  int c, kh, kw;
};

__device__ inline KIndex split_k(const GemmShape& s, int k) {
  const int tap = k / s.c_in_g;
  return KIndex{k % s.c_in_g, tap / s.kw, tap % s.kw};
}

// Element (row m, column k) of the implicit im2col matrix of one group, 0 outside the image.
template <typename T>
__device__ inline T load_a(const ConvArgs& a, const GemmShape& s, int group, int64_t m, int k) {
  if (m >= s.m || k >= s.k) return from_float<T>(0.f);
  const auto [c, kh, kw] = split_k(s, k);
  const int ow = static_cast<int>(m % s.ow);
  const int oh = static_cast<int>((m / s.ow) % s.oh);
  const int64_t n = m / (static_cast<int64_t>(s.ow) * s.oh);
  const int ih = oh * a.stride_h - a.pad_h + kh * a.dil_h;
  const int iw = ow * a.stride_w - a.pad_w + kw * a.dil_w;
  if (ih < 0 || ih >= a.input.h || iw < 0 || iw >= a.input.w) return from_float<T>(0.f);
  const T* x = static_cast<const T*>(a.input.data);
  return x[n * a.input.sn + (static_cast<int64_t>(group) * s.c_in_g + c) * a.input.sc + ih * a.input.sh +
           iw * a.input.sw];
}

// Element (row k, column n) of one group's weight matrix.
template <typename T>
__device__ inline T load_b(const ConvArgs& a, const GemmShape& s, int group, int k, int n) {
  if (k >= s.k || n >= s.n) return from_float<T>(0.f);
  const auto [c, kh, kw] = split_k(s, k);
  const T* w = static_cast<const T*>(a.weight.data);
  const int64_t out_channel = static_cast<int64_t>(group) * s.n + n;
  return w[out_channel * a.weight.sn + c * a.weight.sc + kh * a.weight.sh + kw * a.weight.sw];
}

// bias + residual + ReLU + cast, then the one store of output element (m, n).
template <typename T>
__device__ inline void epilogue(const ConvArgs& a, const GemmShape& s, int group, int64_t m, int n, float acc) {
  if (m >= s.m || n >= s.n) return;
  const int64_t channel = static_cast<int64_t>(group) * s.n + n;
  const int ow = static_cast<int>(m % s.ow);
  const int oh = static_cast<int>((m / s.ow) % s.oh);
  const int64_t batch = m / (static_cast<int64_t>(s.ow) * s.oh);
  acc += to_float(static_cast<const T*>(a.bias)[channel]);
  if (a.residual.data != nullptr) {
    const T* r = static_cast<const T*>(a.residual.data);
    acc += to_float(r[batch * a.residual.sn + channel * a.residual.sc + oh * a.residual.sh + ow * a.residual.sw]);
  }
  if (a.relu && acc < 0.f) acc = 0.f;  // NaN stays NaN, as in torch.relu
  T* y = static_cast<T*>(a.output.data);
  y[batch * a.output.sn + channel * a.output.sc + oh * a.output.sh + ow * a.output.sw] = from_float<T>(acc);
}

// float16 / bfloat16: 4 warps, each a 32x32 sub-tile of 2x2 WMMA 16x16x16 fragments.
template <typename T>
__global__ void __launch_bounds__(128) conv_wmma_kernel(ConvArgs a) {
  using namespace nvcuda;
  constexpr int kTileK = 16;
  constexpr int kPadA = kTileK + 8;   // row pitch of the A tile (elements): avoids bank conflicts
  constexpr int kPadB = kTileN + 8;
  constexpr int kPadC = kTileN + 4;
  __shared__ __align__(32) T tile_a[kTileM * kPadA];
  __shared__ __align__(32) T tile_b[kTileK * kPadB];
  __shared__ __align__(32) float tile_c[kTileM * kPadC];

  const GemmShape s = gemm_shape(a);
  const int group = blockIdx.z;
  const int64_t m0 = static_cast<int64_t>(blockIdx.x) * kTileM;
  const int n0 = blockIdx.y * kTileN;
  const int warp = threadIdx.x / 32;
  const int warp_m = (warp / 2) * 32, warp_n = (warp % 2) * 32;

  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][2];
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.f);

  for (int k0 = 0; k0 < s.k; k0 += kTileK) {
    for (int e = threadIdx.x; e < kTileM * kTileK; e += blockDim.x) {
      const int row = e / kTileK, col = e % kTileK;  // consecutive threads: consecutive channels
      tile_a[row * kPadA + col] = load_a<T>(a, s, group, m0 + row, k0 + col);
    }
    for (int e = threadIdx.x; e < kTileK * kTileN; e += blockDim.x) {
      const int row = e % kTileK, col = e / kTileK;
      tile_b[row * kPadB + col] = load_b<T>(a, s, group, k0 + row, n0 + col);
    }
    __syncthreads();
    for (int i = 0; i < 2; ++i) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> frag_a;
      wmma::load_matrix_sync(frag_a, tile_a + (warp_m + 16 * i) * kPadA, kPadA);
      for (int j = 0; j < 2; ++j) {
        wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> frag_b;
        wmma::load_matrix_sync(frag_b, tile_b + warp_n + 16 * j, kPadB);
        wmma::mma_sync(acc[i][j], frag_a, frag_b, acc[i][j]);
      }
    }
    __syncthreads();
  }
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 2; ++j)
      wmma::store_matrix_sync(tile_c + (warp_m + 16 * i) * kPadC + warp_n + 16 * j, acc[i][j], kPadC,
                              wmma::mem_row_major);
  __syncthreads();
  for (int e = threadIdx.x; e < kTileM * kTileN; e += blockDim.x) {
    const int row = e / kTileN, col = e % kTileN;  // consecutive threads: consecutive channels
    epilogue<T>(a, s, group, m0 + row, n0 + col, tile_c[row * kPadC + col]);
  }
}

// float32: 16x16 threads, each accumulating a 4x4 block of the 64x64 tile in registers.
__global__ void __launch_bounds__(256) conv_fp32_kernel(ConvArgs a) {
  constexpr int kTileK = 8;
  __shared__ float tile_a[kTileK][kTileM + 4];
  __shared__ float tile_b[kTileK][kTileN + 4];

  const GemmShape s = gemm_shape(a);
  const int group = blockIdx.z;
  const int64_t m0 = static_cast<int64_t>(blockIdx.x) * kTileM;
  const int n0 = blockIdx.y * kTileN;
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;

  float acc[4][4] = {};
  for (int k0 = 0; k0 < s.k; k0 += kTileK) {
    for (int e = threadIdx.x; e < kTileM * kTileK; e += blockDim.x) {
      const int row = e / kTileK, col = e % kTileK;
      tile_a[col][row] = load_a<float>(a, s, group, m0 + row, k0 + col);
    }
    for (int e = threadIdx.x; e < kTileK * kTileN; e += blockDim.x) {
      const int row = e % kTileK, col = e / kTileK;
      tile_b[row][col] = load_b<float>(a, s, group, k0 + row, n0 + col);
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kTileK; ++kk) {
      float av[4], bv[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) av[i] = tile_a[kk][ty + 16 * i];
#pragma unroll
      for (int j = 0; j < 4; ++j) bv[j] = tile_b[kk][tx + 16 * j];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) epilogue<float>(a, s, group, m0 + ty + 16 * i, n0 + tx + 16 * j, acc[i][j]);
}

}  // namespace

cudaError_t conv2d_bias_act(DType dtype, const ConvArgs& args, cudaStream_t stream) {
  const GemmShape s = gemm_shape(args);
  if (s.m == 0 || s.n == 0) return cudaSuccess;
  const dim3 grid(static_cast<unsigned>((s.m + kTileM - 1) / kTileM), (s.n + kTileN - 1) / kTileN, args.groups);
  switch (dtype) {
    case DType::Float16:
      conv_wmma_kernel<__half><<<grid, 128, 0, stream>>>(args);
      break;
    case DType::BFloat16:
      conv_wmma_kernel<__nv_bfloat16><<<grid, 128, 0, stream>>>(args);
      break;
    case DType::Float32:
      conv_fp32_kernel<<<grid, 256, 0, stream>>>(args);
      break;
  }
  return cudaGetLastError();
}

}  // namespace fastresnet::cuda
