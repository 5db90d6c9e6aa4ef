// Registers the CUDA kernels as the CUDA implementations of the fastresnet::cpp_* ops,
// whose schemas and fake implementations are defined in Python (fastresnet/ops/schemas.py).
// Argument checks mirror fastresnet/ops/checks.py; kernels run on the current CUDA stream.
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include <ATen/ATen.h>
#include <torch/library.h>

#include <optional>
#include <string>

#include "../op_shapes.h"
#include "kernels.h"

namespace fastresnet::cuda {
namespace {

DType dtype_of(const at::Tensor& t, const char* op) {
  switch (t.scalar_type()) {
    case at::kFloat:
      return DType::Float32;
    case at::kHalf:
      return DType::Float16;
    case at::kBFloat16:
      return DType::BFloat16;
    default:
      TORCH_CHECK(false, op, ": expected a float32, float16 or bfloat16 tensor, got ", t.scalar_type());
  }
}

View4 view(const at::Tensor& t) {
  return View4{t.data_ptr(), t.size(0), t.size(1), t.size(2), t.size(3),
               t.stride(0),  t.stride(1), t.stride(2), t.stride(3)};
}

void check_activation(const at::Tensor& t, const char* op) {
  TORCH_CHECK(t.dim() == 4, op, ": expected a 4-D input (N, C, H, W), got a ", t.dim(), "-D tensor of shape ",
              t.sizes());
  TORCH_CHECK(t.is_cuda(), op, ": expected a CUDA tensor, got one on ", t.device());
}

void check_like(const at::Tensor& t, const at::Tensor& like, const char* op, const char* what) {
  TORCH_CHECK(t.scalar_type() == like.scalar_type() && t.device() == like.device(), op, ": expected ", what,
              " of dtype ", like.scalar_type(), " on ", like.device(), ", got ", t.scalar_type(), " on ",
              t.device());
}

void check_launch(cudaError_t error, const char* op) {
  TORCH_CHECK(error == cudaSuccess, op, ": kernel launch failed: ", cudaGetErrorString(error));
}

at::Tensor conv2d_bias_act_op(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& bias,
                           const std::optional<at::Tensor>& residual, at::IntArrayRef stride,
                           at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups, bool relu,
                           c10::string_view weight_layout) {
  const char* op = "fastresnet::cpp_conv2d_bias_act";
  TORCH_CHECK(weight_layout == "oihw", op, ": the CUDA kernels read weights in the logical layout 'oihw' only, got '",
              std::string(weight_layout), "' (a layout of the C++ CPU kernels: optimize the model on the GPU)");
  check_activation(input, op);
  TORCH_CHECK(weight.dim() == 4, op, ": expected a 4-D weight, got shape ", weight.sizes());
  check_like(input, weight, op, "an input");
  check_like(bias, weight, op, "a bias");
  TORCH_CHECK(groups >= 1 && weight.size(0) % groups == 0, op, ": groups=", groups, " must divide C_out=",
              weight.size(0));
  TORCH_CHECK(input.size(1) == weight.size(1) * groups, op, ": expected ", weight.size(1) * groups,
              " input channels, got shape ", input.sizes());
  TORCH_CHECK(bias.dim() == 1 && bias.size(0) == weight.size(0), op, ": expected a bias of shape (",
              weight.size(0), ",), got ", bias.sizes());
  TORCH_CHECK(stride.size() == 2 && padding.size() == 2 && dilation.size() == 2, op,
              ": stride, padding and dilation take two values each");
  const int64_t oh = conv_output_size(input.size(2), weight.size(2), stride[0], padding[0], dilation[0]);
  const int64_t ow = conv_output_size(input.size(3), weight.size(3), stride[1], padding[1], dilation[1]);
  TORCH_CHECK(oh > 0 && ow > 0, op, ": input of spatial size ", input.sizes().slice(2), " is too small");
  c10::cuda::CUDAGuard guard(input.device());
  at::Tensor output = at::empty({input.size(0), weight.size(0), oh, ow}, input.options(), output_format(input));
  const at::Tensor bias_contiguous = bias.contiguous();  // alive until the launch
  ConvArgs args{view(input),
                view(weight),
                bias_contiguous.data_ptr(),
                View4{nullptr, 0, 0, 0, 0, 0, 0, 0, 0},
                view(output),
                static_cast<int>(stride[0]),
                static_cast<int>(stride[1]),
                static_cast<int>(padding[0]),
                static_cast<int>(padding[1]),
                static_cast<int>(dilation[0]),
                static_cast<int>(dilation[1]),
                static_cast<int>(groups),
                relu};
  if (residual.has_value()) {
    check_like(*residual, input, op, "a residual");
    TORCH_CHECK(residual->sizes() == output.sizes(), op, ": expected a residual of the output's shape ",
                output.sizes(), ", got ", residual->sizes());
    args.residual = view(*residual);
  }
  check_launch(fastresnet::cuda::conv2d_bias_act(dtype_of(input, op), args, c10::cuda::getCurrentCUDAStream()),
               op);
  return output;
}

at::Tensor max_pool2d_op(const at::Tensor& input, at::IntArrayRef kernel, at::IntArrayRef stride,
                      at::IntArrayRef padding, at::IntArrayRef dilation, bool ceil_mode) {
  const char* op = "fastresnet::cpp_max_pool2d";
  check_activation(input, op);
  auto out_size = [&](int64_t size, int i) {
    return pool_output_size(size, kernel[i], stride[i], padding[i], dilation[i], ceil_mode);
  };
  c10::cuda::CUDAGuard guard(input.device());
  at::Tensor output = at::empty({input.size(0), input.size(1), out_size(input.size(2), 0), out_size(input.size(3), 1)},
                                input.options(), output_format(input));
  check_launch(fastresnet::cuda::max_pool2d(dtype_of(input, op), view(input), view(output), kernel[0], kernel[1],
                                            stride[0], stride[1], padding[0], padding[1], dilation[0], dilation[1],
                                            c10::cuda::getCurrentCUDAStream()),
               op);
  return output;
}

at::Tensor global_avg_pool_op(const at::Tensor& input) {
  const char* op = "fastresnet::cpp_global_avg_pool";
  check_activation(input, op);
  c10::cuda::CUDAGuard guard(input.device());
  at::Tensor output = at::empty({input.size(0), input.size(1)}, input.options());
  check_launch(fastresnet::cuda::global_avg_pool(dtype_of(input, op), view(input), output.data_ptr(),
                                                 c10::cuda::getCurrentCUDAStream()),
               op);
  return output;
}

at::Tensor add_relu_op(const at::Tensor& input, const at::Tensor& residual) {
  const char* op = "fastresnet::cpp_add_relu";
  check_activation(input, op);
  check_like(residual, input, op, "a residual");
  TORCH_CHECK(residual.sizes() == input.sizes(), op, ": expected a residual of shape ", input.sizes(), ", got ",
              residual.sizes());
  c10::cuda::CUDAGuard guard(input.device());
  at::Tensor output = at::empty_like(input, output_format(input));
  check_launch(fastresnet::cuda::add_relu(dtype_of(input, op), view(input), view(residual), view(output),
                                          c10::cuda::getCurrentCUDAStream()),
               op);
  return output;
}

}  // namespace

TORCH_LIBRARY_IMPL(fastresnet, CUDA, m) {
  m.impl("cpp_conv2d_bias_act", &conv2d_bias_act_op);
  m.impl("cpp_max_pool2d", &max_pool2d_op);
  m.impl("cpp_global_avg_pool", &global_avg_pool_op);
  m.impl("cpp_add_relu", &add_relu_op);
}

}  // namespace fastresnet::cuda
