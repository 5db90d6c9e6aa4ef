// Registers the CPU kernels of the tiers (tiers.h) as the CPU implementations of the
// fastresnet::cpp_* ops, whose schemas and fake implementations are defined in Python
// (fastresnet/ops/schemas.py). Argument checks mirror fastresnet/ops/checks.py.
//
// The kernels work on NHWC (channels_last) fp32 or bf16 activations. Inside an optimized
// model every activation already is NHWC (its first conv converts the input once) and conv
// weights arrive packed once, by optimize(), in a layout named with the tier whose kernels
// read it (layouts.h); other inputs are accepted and converted per call, which is correct
// but pays for the conversion.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <limits>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "../op_shapes.h"
#include "layouts.h"
#include "output_cache.h"
#include "tiers.h"

namespace fastresnet::cpu {

namespace {

const CpuTier& runnable_active_tier(const char* op) {
  const CpuTier* tier = active_tier();
  TORCH_CHECK(tier != nullptr, op, ": ", no_active_tier_reason());
  return *tier;
}

// The layout `name` (looked up, not parsed: layouts.h), refused if its tier cannot run here.
const WeightLayout& runnable_layout(const std::string& name, const char* op) {
  const WeightLayout& layout = find_layout(name, op);
  if (layout.tier == nullptr) return layout;
  const std::string reason = tier_unsupported_reason(*layout.tier);
  TORCH_CHECK(reason.empty(), op, ": the weight is laid out as '", name, "' for the ", layout.tier->name(),
              " kernels, which cannot run here (", reason,
              "); optimize the model on this machine, or load it with torch.load, which re-lays out its weights");
  return layout;
}

// A packed weight in `layout`, checked against it; its geometry (C_out, C_in/groups, KH, KW).
std::array<int64_t, 4> check_packed_weight(const at::Tensor& weight, const WeightLayout& layout, int64_t out_c,
                                           int64_t groups, const char* op) {
  TORCH_CHECK(weight.is_contiguous() && weight.scalar_type() == layout.dtype() && weight.device().is_cpu(), op,
              ": expected a contiguous ", layout.dtype(), " CPU weight laid out as '", layout.name, "', got a ",
              weight.is_contiguous() ? "contiguous " : "non-contiguous ", weight.scalar_type(), " weight on ",
              weight.device());
  return weight_geometry(layout, weight.sizes(), out_c, groups, op);
}

// Calls run(item) for items [0, items) on torch's threads, each taking the next item as it
// finishes one rather than a fixed share: a thread that starts late (an OpenMP worker waking)
// or runs slower (a vCPU shared with other tenants) then does fewer, instead of the whole op
// waiting for it. Its plan cuts the work finer for this (plan_int8_conv).
template <class Run>
void run_items_as_threads_free(int64_t items, Run&& run) {
  std::atomic<int64_t> next{0};
  at::parallel_for(0, std::min<int64_t>(items, at::get_num_threads()), 1, [&](int64_t, int64_t) {
    for (int64_t item = next++; item < items; item = next++) run(item);
  });
}

}  // namespace

namespace {

void check_activation(const at::Tensor& t, const char* op, const char* what) {
  TORCH_CHECK(t.dim() == 4, op, ": expected a 4-D ", what, " (N, C, H, W), got a ", t.dim(), "-D tensor of shape ",
              t.sizes());
  TORCH_CHECK(t.device().is_cpu(), op, ": expected a CPU ", what, ", got one on ", t.device());
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kBFloat16, op,
              ": the C++ CPU kernels take float32 or bfloat16, got a ", what, " of dtype ", t.scalar_type());
}

bool is_bf16(const at::Tensor& t) { return t.scalar_type() == at::kBFloat16; }

template <class T>
const T* data(const at::Tensor& t) {
  if constexpr (std::is_same_v<T, Bf16>) {
    return reinterpret_cast<const Bf16*>(t.data_ptr<at::BFloat16>());
  } else {
    return t.data_ptr<float>();
  }
}

template <class T>
T* mutable_data(at::Tensor& t) {
  return const_cast<T*>(data<T>(t));
}

at::Tensor nhwc(const at::Tensor& t) { return t.contiguous(at::MemoryFormat::ChannelsLast); }

// An output the kernels can write (NHWC), and the one to return in the contract's layout.
struct Output {
  at::Tensor result, nhwc;
  Output(at::IntArrayRef shape, const at::Tensor& like)
      : result(empty_output(shape, output_format(like), like.scalar_type())),
        nhwc(result.is_contiguous(at::MemoryFormat::ChannelsLast)
                 ? result
                 : at::empty(shape, like.options(), at::MemoryFormat::ChannelsLast)) {}
  at::Tensor finish() {
    if (!nhwc.is_same(result)) result.copy_(nhwc);
    return result;
  }
};

// The residual in NHWC, checked against the output's shape; none if not given.
std::optional<at::Tensor> nhwc_residual(const std::optional<at::Tensor>& residual, const at::Tensor& out,
                                        const char* op) {
  if (!residual.has_value()) return std::nullopt;
  check_activation(*residual, op, "residual");
  TORCH_CHECK(residual->sizes() == out.sizes() && residual->scalar_type() == out.scalar_type(), op,
              ": expected a residual of the output's shape ", out.sizes(), " and dtype ", out.scalar_type(),
              ", got ", residual->sizes(), " ", residual->scalar_type());
  return nhwc(*residual);
}

template <class T>
void run_winograd(const CpuTier& tier, const WinogradShape& s, const at::Tensor& x, const at::Tensor& weight,
                  const at::Tensor& bias, const std::optional<at::Tensor>& residual, at::Tensor& out, bool relu) {
  const WinogradTensorsOf<T> t{data<T>(x), weight.data_ptr<float>(), data<T>(bias),
                               residual ? data<T>(*residual) : nullptr, mutable_data<T>(out), relu};
  const WinogradPlan plan = tier.plan_winograd(s, at::get_num_threads());
  at::parallel_for(0, plan.items(), 1, [&](int64_t begin, int64_t end) {
    if constexpr (std::is_same_v<T, Bf16>) {
      tier.run_winograd_bf16(s, t, plan, begin, end);
    } else {
      tier.run_winograd(s, t, plan, begin, end);
    }
  });
}

// A 3x3 stride-1 conv with a weight in a Winograd layout: float32 whatever the activations'
// dtype (WinogradTensorsOf says why).
at::Tensor winograd_conv(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& bias,
                         const std::optional<at::Tensor>& residual, at::IntArrayRef stride, at::IntArrayRef padding,
                         at::IntArrayRef dilation, int64_t groups, bool relu, const WeightLayout& layout) {
  const char* op = "fastresnet::cpp_conv2d_bias_act (Winograd)";
  const CpuTier& tier = *layout.tier;
  const int64_t out_c = bias.size(0), block = tier.block;
  const int64_t in_c = check_packed_weight(weight, layout, out_c, groups, op)[1];
  TORCH_CHECK(input.size(1) == in_c && in_c % tier.lanes == 0, op, ": expected ", in_c, " input channels (a multiple of ",
              tier.lanes, "), got shape ", input.sizes());
  TORCH_CHECK(groups == 1 && stride.size() == 2 && stride[0] == 1 && stride[1] == 1 && dilation.size() == 2 &&
                  dilation[0] == 1 && dilation[1] == 1 && padding.size() == 2 && padding[0] >= 0 && padding[1] >= 0,
              op, ": a Winograd weight is for 3x3 convs with stride 1, dilation 1, groups 1 and padding >= 0; got "
              "stride ", stride, ", dilation ", dilation, ", groups ", groups, ", padding ", padding);
  WinogradShape s{input.size(0), input.size(2), input.size(3), input.size(1), input.size(2) + 2 * padding[0] - 2,
                  input.size(3) + 2 * padding[1] - 2, out_c, padding[0], padding[1], layout.m, block};
  TORCH_CHECK(s.out_h > 0 && s.out_w > 0, op, ": input of spatial size ", input.sizes().slice(2), " is too small");
  const at::Tensor x = nhwc(input);
  Output out({s.batch, s.out_c, s.out_h, s.out_w}, input);
  const std::optional<at::Tensor> res = nhwc_residual(residual, out.result, op);
  const at::Tensor b = bias.contiguous();
  if (s.tiles() == 0) return out.finish();
  if (is_bf16(input)) {
    run_winograd<Bf16>(tier, s, x, weight, b, res, out.nhwc, relu);
  } else {
    run_winograd<float>(tier, s, x, weight, b, res, out.nhwc, relu);
  }
  return out.finish();
}

// `pixels` NHWC pixels copied with `count` zero channels after each group's `per_group`.
template <class Element>
void copy_pixels_with_zero_channels(const Element* in, Element* out, int64_t pixels, int64_t groups,
                                    int64_t per_group, int64_t count) {
  for (int64_t p = 0; p < pixels * groups; ++p) {
    for (int64_t i = 0; i < per_group; ++i) *out++ = *in++;
    for (int64_t i = 0; i < count; ++i) *out++ = Element(0);
  }
}

template <class Element>
void copy_with_zero_channels(const Element* from, Element* to, int64_t pixels, int64_t groups, int64_t per_group,
                             int64_t count) {
  at::parallel_for(0, pixels, 2048, [&](int64_t begin, int64_t end) {
    copy_pixels_with_zero_channels(from + begin * groups * per_group, to + begin * groups * (per_group + count),
                                   end - begin, groups, per_group, count);
  });
}

// The input with `count` zero channels appended to each group, for a weight laid out with
// them: one for a bf16 weight of odd C_in/groups (the paired reduction steps need an even
// count), up to three for an int8 one (its steps go by four). NHWC. A plain loop per element
// size: at::constant_pad_nd took 0.3 ms on ResNet's 224x224 input.
at::Tensor append_zero_channels(const at::Tensor& x, int64_t groups, int64_t count = 1) {
  const at::Tensor in = nhwc(x);
  const int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  at::Tensor padded = at::empty({n, c + groups * count, h, w}, x.options(), at::MemoryFormat::ChannelsLast);
  const auto copy = [&](auto element) {
    using Element = decltype(element);
    copy_with_zero_channels(static_cast<const Element*>(in.const_data_ptr()),
                            static_cast<Element*>(padded.mutable_data_ptr()), n * h * w, groups, c / groups, count);
  };
  switch (x.element_size()) {
    case 1: copy(uint8_t{}); break;
    case 2: copy(uint16_t{}); break;
    default: TORCH_CHECK(x.element_size() == 4, "append_zero_channels: unexpected element size"); copy(uint32_t{});
  }
  return padded;
}

// A uint8 NHWC input with `count` zero channels appended to each group, as append_zero_channels,
// and its padding written out around each image: `pad_h` rows and `pad_w` columns of `fill`
// (the input's zero point, what a real zero quantizes to). `slack` more bytes of `fill` follow
// the last image, for a kernel that reads a little past it (row windows).
at::Tensor pad_uint8_input(const at::Tensor& x, int64_t groups, int64_t count, int64_t pad_h, int64_t pad_w,
                           uint8_t fill, int64_t slack = 0) {
  const at::Tensor in = nhwc(x);
  const int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3), padded_c = c + groups * count;
  const int64_t padded_h = h + 2 * pad_h, padded_w = w + 2 * pad_w, bytes = n * padded_h * padded_w * padded_c;
  const at::Tensor buffer = at::full({bytes + slack}, fill, x.options());
  at::Tensor padded = buffer.narrow(0, 0, bytes).view({n, padded_h, padded_w, padded_c}).permute({0, 3, 1, 2});
  const uint8_t* from = in.const_data_ptr<uint8_t>();
  uint8_t* to = padded.mutable_data_ptr<uint8_t>();
  at::parallel_for(0, n * h, 16, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t image = row / h, y = row % h;
      uint8_t* first = to + ((image * padded_h + y + pad_h) * padded_w + pad_w) * padded_c;
      copy_pixels_with_zero_channels(from + row * w * c, first, w, groups, c / groups, count);
    }
  });
  return padded;
}

// Whether a bf16 conv on `tier` reads its input widened to fp32 by the op, once, rather than by
// the kernel per tile and flush (kWidensInput, conv_kernel.h). The kernel widens each value
// as often as tiles read it: once per tap that covers it and per range of output-channel
// blocks. Once in the op costs a pass over memory, a write and a read back, about two
// widenings in cache. Measured on Zen 3, one thread, bf16 over float32 time (BENCHMARKS.md):
// widened once, the stem (no longer padded to 4 channels) went from 1.52-1.73 to 1.07-1.13
// and 3x3/2 512 at 14x14 from 1.13-1.27 to 0.83-0.92; the 1x1 convs at 56x56 took 1.14-1.30
// widened once, 0.84-1.03 per tile.
bool widens_whole_input(const CpuTier& tier, const ConvShape& s, const ConvPlan& plan) {
  if (!tier.bf16_widens) return false;
  const double reads_per_value =
      double(s.kernel_h * s.kernel_w) / double(s.stride_h * s.stride_w) * double(plan.ranges);
  return reads_per_value > 2;
}

template <class T, class In = T>
void run_direct(const CpuTier& tier, const ConvShape& s, const ConvPlan& plan, const at::Tensor& x,
                const at::Tensor& weight, const at::Tensor& bias, const std::optional<at::Tensor>& residual,
                at::Tensor& out, bool relu) {
  const ConvTensorsOf<T, In> t{data<In>(x), data<T>(weight), data<T>(bias), residual ? data<T>(*residual) : nullptr,
                               mutable_data<T>(out), relu};
  at::parallel_for(0, plan.items(s), 1, [&](int64_t begin, int64_t end) {
    if constexpr (std::is_same_v<In, float> && std::is_same_v<T, Bf16>) {
      tier.run_conv_bf16_widened(s, t, plan, begin, end);
    } else if constexpr (std::is_same_v<T, Bf16>) {
      tier.run_conv_bf16(s, t, plan, begin, end);
    } else {
      tier.run_conv(s, t, plan, begin, end);
    }
  });
}

at::Tensor conv2d_bias_act(const at::Tensor& input, const at::Tensor& weight_arg, const at::Tensor& bias,
                           const std::optional<at::Tensor>& residual, at::IntArrayRef stride, at::IntArrayRef padding,
                           at::IntArrayRef dilation, int64_t groups, bool relu, c10::string_view weight_layout) {
  const char* op = "fastresnet::cpp_conv2d_bias_act";
  const WeightLayout& layout = runnable_layout(std::string(weight_layout), op);
  check_activation(input, op, "input");
  TORCH_CHECK(bias.dim() == 1 && bias.scalar_type() == input.scalar_type() && bias.device().is_cpu(), op,
              ": expected a ", input.scalar_type(), " CPU bias of shape (C_out,) (the input's dtype), got ",
              bias.scalar_type(), " of shape ", bias.sizes());
  const int64_t out_c = bias.size(0);
  TORCH_CHECK(groups >= 1 && out_c % groups == 0, op, ": groups=", groups, " must divide C_out=", out_c);
  if (layout.kind == WeightLayout::kWinograd) {
    return winograd_conv(input, weight_arg, bias, residual, stride, padding, dilation, groups, relu, layout);
  }
  // A logical weight is blocked here, per call, for the active tier; optimize() blocks it once instead.
  const bool logical = layout.kind == WeightLayout::kLogical;
  if (logical) {
    const auto geometry = weight_geometry(layout, weight_arg.sizes(), out_c, groups, op);
    TORCH_CHECK_VALUE(geometry[0] == out_c, op, ": expected a weight (C_out, C_in/groups, KH, KW) with C_out=", out_c,
                      " (the bias's length), got shape ", weight_arg.sizes());
  }
  const bool bf16 = is_bf16(input);
  const CpuTier* active = logical ? &runnable_active_tier(op) : nullptr;
  const WeightLayout& blocked = !logical ? layout
                                : bf16   ? tier_layout_bf16(*active, weight_arg.size(1))
                                         : tier_layout(*active, "direct");
  TORCH_CHECK(blocked.dtype() == input.scalar_type(), op, ": the weight laid out as '", blocked.name, "' is for ",
              blocked.dtype(), " activations, got a ", input.scalar_type(), " input");
  const at::Tensor weight = logical ? pack_weight(weight_arg, groups, blocked, op) : weight_arg;
  const CpuTier& tier = *blocked.tier;
  const int64_t block = tier.block;
  const int64_t in_c_g = check_packed_weight(weight, blocked, out_c, groups, op)[1];
  TORCH_CHECK(input.size(1) == in_c_g * groups, op, ": expected ", in_c_g * groups, " input channels, got shape ",
              input.sizes());
  TORCH_CHECK(in_c_g <= kMaxChannelsPerGroup, op, ": at most ", kMaxChannelsPerGroup,
              " input channels per group, got ", in_c_g);
  TORCH_CHECK(stride.size() == 2 && padding.size() == 2 && dilation.size() == 2, op,
              ": stride, padding and dilation take two values each");
  ConvShape s{};
  s.batch = input.size(0), s.in_c = input.size(1) + groups * blocked.pad_in, s.in_h = input.size(2),
  s.in_w = input.size(3);
  s.kernel_h = weight.size(2), s.kernel_w = weight.size(3);
  s.stride_h = stride[0], s.stride_w = stride[1], s.pad_h = padding[0], s.pad_w = padding[1];
  s.dilation_h = dilation[0], s.dilation_w = dilation[1], s.groups = groups, s.out_c = out_c;
  s.block = block;
  TORCH_CHECK(s.stride_h >= 1 && s.stride_w >= 1 && s.dilation_h >= 1 && s.dilation_w >= 1 && s.pad_h >= 0 &&
                  s.pad_w >= 0,
              op, ": expected stride and dilation >= 1 and padding >= 0, got stride ", stride, ", padding ", padding,
              ", dilation ", dilation);
  s.out_h = conv_output_size(s.in_h, s.kernel_h, s.stride_h, s.pad_h, s.dilation_h);
  s.out_w = conv_output_size(s.in_w, s.kernel_w, s.stride_w, s.pad_w, s.dilation_w);
  TORCH_CHECK(s.out_h > 0 && s.out_w > 0, op, ": input of spatial size ", input.sizes().slice(2), " is too small");

  const at::Tensor x = blocked.pad_in ? append_zero_channels(nhwc(input), groups) : nhwc(input);
  Output out({s.batch, s.out_c, s.out_h, s.out_w}, input);
  const std::optional<at::Tensor> res = nhwc_residual(residual, out.result, op);
  const at::Tensor b = bias.contiguous();
  if (s.pixels() == 0 || s.out_c == 0) return out.finish();
  const int threads = at::get_num_threads();
  if (bf16) {
    const ConvPlan plan = tier.plan_conv_bf16(s, threads);
    if (widens_whole_input(tier, s, plan)) {
      run_direct<Bf16, float>(tier, s, plan, nhwc(x.to(at::kFloat)), weight, b, res, out.nhwc, relu);
    } else {
      run_direct<Bf16>(tier, s, plan, x, weight, b, res, out.nhwc, relu);
    }
  } else {
    run_direct<float>(tier, s, tier.plan_conv(s, threads), x, weight, b, res, out.nhwc, relu);
  }
  return out.finish();
}

at::Tensor add_relu_op(const at::Tensor& input, const at::Tensor& residual) {
  const char* op = "fastresnet::cpp_add_relu";
  const CpuTier& tier = runnable_active_tier(op);
  check_activation(input, op, "input");
  check_activation(residual, op, "residual");
  TORCH_CHECK(residual.sizes() == input.sizes() && residual.scalar_type() == input.scalar_type(), op,
              ": expected a residual of the input's shape ", input.sizes(), " and dtype ", input.scalar_type(),
              ", got ", residual.sizes(), " ", residual.scalar_type());
  const at::MemoryFormat format = output_format(input);
  const at::Tensor x = input.contiguous(format), r = residual.contiguous(format);
  at::Tensor out = empty_output(x.sizes(), format, x.scalar_type());
  at::parallel_for(0, x.numel(), 1 << 16, [&](int64_t begin, int64_t end) {
    if (is_bf16(x)) {
      tier.add_relu_bf16(data<Bf16>(x), data<Bf16>(r), mutable_data<Bf16>(out), begin, end);
    } else {
      tier.add_relu(data<float>(x), data<float>(r), mutable_data<float>(out), begin, end);
    }
  });
  return out;
}

PoolShape checked_pool_shape(const at::Tensor& input, at::IntArrayRef kernel_size, at::IntArrayRef stride,
                             at::IntArrayRef padding, at::IntArrayRef dilation, bool ceil_mode, const char* op);

at::Tensor max_pool2d_op(const at::Tensor& input, at::IntArrayRef kernel_size, at::IntArrayRef stride,
                         at::IntArrayRef padding, at::IntArrayRef dilation, bool ceil_mode) {
  const char* op = "fastresnet::cpp_max_pool2d";
  const CpuTier& tier = runnable_active_tier(op);
  check_activation(input, op, "input");
  const PoolShape s = checked_pool_shape(input, kernel_size, stride, padding, dilation, ceil_mode, op);
  const at::Tensor x = nhwc(input);
  Output out({s.batch, s.channels, s.out_h, s.out_w}, input);
  at::parallel_for(0, s.batch * s.out_h * s.out_w, 16, [&](int64_t begin, int64_t end) {
    if (is_bf16(x)) {
      tier.max_pool_bf16(s, data<Bf16>(x), mutable_data<Bf16>(out.nhwc), begin, end);
    } else {
      tier.max_pool(s, data<float>(x), mutable_data<float>(out.nhwc), begin, end);
    }
  });
  return out.finish();
}

PoolShape checked_pool_shape(const at::Tensor& input, at::IntArrayRef kernel_size, at::IntArrayRef stride,
                             at::IntArrayRef padding, at::IntArrayRef dilation, bool ceil_mode, const char* op) {
  TORCH_CHECK(kernel_size.size() == 2 && stride.size() == 2 && padding.size() == 2 && dilation.size() == 2, op,
              ": kernel_size, stride, padding and dilation take two values each");
  PoolShape s{};
  s.batch = input.size(0), s.channels = input.size(1), s.in_h = input.size(2), s.in_w = input.size(3);
  s.kernel_h = kernel_size[0], s.kernel_w = kernel_size[1], s.stride_h = stride[0], s.stride_w = stride[1];
  s.pad_h = padding[0], s.pad_w = padding[1], s.dilation_h = dilation[0], s.dilation_w = dilation[1];
  TORCH_CHECK(s.kernel_h >= 1 && s.kernel_w >= 1 && s.stride_h >= 1 && s.stride_w >= 1 && s.dilation_h >= 1 &&
                  s.dilation_w >= 1 && s.pad_h >= 0 && s.pad_w >= 0 && 2 * s.pad_h <= s.kernel_h &&
                  2 * s.pad_w <= s.kernel_w,
              op, ": expected kernel_size, stride, dilation >= 1 and 0 <= padding <= kernel_size / 2, got kernel_size ",
              kernel_size, ", stride ", stride, ", padding ", padding, ", dilation ", dilation);
  s.out_h = pool_output_size(s.in_h, s.kernel_h, s.stride_h, s.pad_h, s.dilation_h, ceil_mode);
  s.out_w = pool_output_size(s.in_w, s.kernel_w, s.stride_w, s.pad_w, s.dilation_w, ceil_mode);
  TORCH_CHECK(s.out_h > 0 && s.out_w > 0, op, ": input of spatial size ", input.sizes().slice(2), " is too small");
  return s;
}

at::Tensor global_avg_pool_op(const at::Tensor& input) {
  const char* op = "fastresnet::cpp_global_avg_pool";
  const CpuTier& tier = runnable_active_tier(op);
  check_activation(input, op, "input");
  TORCH_CHECK(input.size(2) > 0 && input.size(3) > 0, op, ": expected a non-empty H x W plane, got shape ",
              input.sizes());
  const at::Tensor x = nhwc(input);
  at::Tensor out = at::empty({input.size(0), input.size(1)}, input.options());
  const int64_t pixels = input.size(2) * input.size(3), channels = input.size(1);
  at::parallel_for(0, input.size(0), 1, [&](int64_t begin, int64_t end) {
    if (is_bf16(x)) {
      tier.global_avg_pool_bf16(data<Bf16>(x), mutable_data<Bf16>(out), pixels, channels, begin, end);
    } else {
      tier.global_avg_pool(data<float>(x), mutable_data<float>(out), pixels, channels, begin, end);
    }
  });
  return out;
}

// A per-output-channel array padded with zeros to whole blocks per group, as the int8 kernel
// reads it: a plain copy, since three ATen pads per conv cost about 1 ms of a ResNet-50.
template <class T>
std::vector<T> per_block(const at::Tensor& values, int64_t groups, int64_t blocks, int64_t block) {
  const at::Tensor v = values.contiguous();
  const T* from = v.const_data_ptr<T>();
  const int64_t per_group = v.size(0) / groups;
  std::vector<T> padded(groups * blocks * block, T(0));
  for (int64_t g = 0; g < groups; ++g) std::copy(from + g * per_group, from + (g + 1) * per_group, &padded[g * blocks * block]);
  return padded;
}

void check_per_channel(const at::Tensor& t, const char* what, at::ScalarType dtype, int64_t out_c, const char* op) {
  TORCH_CHECK_VALUE(t.dim() == 1 && t.size(0) == out_c && t.scalar_type() == dtype && t.device().is_cpu(), op,
                    ": expected ", what, " of shape (", out_c, ",), ", dtype, " on CPU, got ", t.scalar_type(),
                    " of shape ", t.sizes(), " on ", t.device());
}

void check_uint8_zero_point(int64_t zero_point, const char* op, const char* what) {
  TORCH_CHECK_VALUE(0 <= zero_point && zero_point <= 255, op, ": expected ", what,
                    " in 0..255 (a uint8 zero point), got ", zero_point);
}

void check_uint8_activation(const at::Tensor& t, const char* op, const char* what) {
  TORCH_CHECK_VALUE(t.dim() == 4 && t.scalar_type() == at::kByte && t.device().is_cpu(), op, ": expected a 4-D ",
                    what, " (N, C, H, W) of uint8 on CPU, got ", t.scalar_type(), " of shape ", t.sizes(), " on ",
                    t.device());
}

// The int8 conv (ops/int8_reference.py gives its arithmetic; the kernels match it bit for bit).
at::Tensor int8_conv2d(const at::Tensor& input, const at::Tensor& weight_arg, const at::Tensor& multiplier,
                       const at::Tensor& bias, const at::Tensor& compensation, const std::optional<at::Tensor>& residual,
                       double residual_multiplier, int64_t residual_zero_point, int64_t input_zero_point,
                       int64_t output_zero_point, at::IntArrayRef stride, at::IntArrayRef padding,
                       at::IntArrayRef dilation, int64_t groups, bool relu, c10::string_view weight_layout) {
  const char* op = "fastresnet::cpp_int8_conv2d";
  const WeightLayout& layout = runnable_layout(std::string(weight_layout), op);
  check_uint8_activation(input, op, "input");
  TORCH_CHECK_VALUE(bias.dim() == 1, op, ": expected a 1-D bias (C_out,), got shape ", bias.sizes());
  const int64_t out_c = bias.size(0);
  check_per_channel(bias, "a bias", at::kFloat, out_c, op);
  check_per_channel(multiplier, "a multiplier", at::kFloat, out_c, op);
  check_per_channel(compensation, "a compensation", at::kInt, out_c, op);
  check_uint8_zero_point(residual_zero_point, op, "residual_zero_point");
  check_uint8_zero_point(input_zero_point, op, "input_zero_point");
  check_uint8_zero_point(output_zero_point, op, "output_zero_point");
  TORCH_CHECK_VALUE(groups >= 1 && out_c % groups == 0 && input.size(1) % groups == 0, op, ": groups=", groups,
                    " must divide C_out=", out_c, " and C_in=", input.size(1));
  TORCH_CHECK_VALUE(layout.kind == WeightLayout::kLogical || layout.kind == WeightLayout::kInt8Blocked, op,
                    ": expected an int8 weight laid out as 'oihw' or '<tier>:int8-blocked' or '<tier>:int8-7bit', got '", layout.name, "'");
  const bool logical = layout.kind == WeightLayout::kLogical;
  if (logical) {
    TORCH_CHECK_VALUE(weight_arg.dim() == 4 && weight_arg.scalar_type() == at::kChar && weight_arg.size(0) == out_c,
                      op, ": expected an int8 weight (C_out, C_in/groups, KH, KW) with C_out=", out_c,
                      " (the bias's length), got ", weight_arg.scalar_type(), " of shape ", weight_arg.sizes());
  }
  const WeightLayout& blocked = logical ? tier_layout(runnable_active_tier(op), "int8-blocked") : layout;
  const at::Tensor weight = logical ? pack_weight(weight_arg, groups, blocked, op) : weight_arg;
  const Int8Kernels& kernels = *blocked.int8;
  const int64_t in_c4 = check_packed_weight(weight, blocked, out_c, groups, op)[1];
  const int64_t in_c_g = input.size(1) / groups;
  TORCH_CHECK_VALUE((in_c_g + 3) / 4 * 4 == in_c4, op, ": the weight is for ", in_c4 - 3, "..", in_c4,
                    " input channels per group, got an input of shape ", input.sizes(), " with groups=", groups);
  TORCH_CHECK(stride.size() == 2 && padding.size() == 2 && dilation.size() == 2, op,
              ": stride, padding and dilation take two values each");
  ConvShape s{};
  s.batch = input.size(0), s.in_c = in_c4 * groups, s.in_h = input.size(2), s.in_w = input.size(3);
  s.kernel_h = weight.size(2), s.kernel_w = weight.size(3);
  s.stride_h = stride[0], s.stride_w = stride[1], s.pad_h = padding[0], s.pad_w = padding[1];
  s.dilation_h = dilation[0], s.dilation_w = dilation[1], s.groups = groups, s.out_c = out_c;
  s.block = kernels.block;
  TORCH_CHECK(s.stride_h >= 1 && s.stride_w >= 1 && s.dilation_h >= 1 && s.dilation_w >= 1 && s.pad_h >= 0 &&
                  s.pad_w >= 0,
              op, ": expected stride and dilation >= 1 and padding >= 0, got stride ", stride, ", padding ", padding,
              ", dilation ", dilation);
  // int32 holds every sum exactly while K x 255 x 127 < 2^31.
  constexpr int64_t kMaxReduction = (int64_t(1) << 31) / (255 * 127);
  TORCH_CHECK_VALUE(s.reduction() <= kMaxReduction, op, ": at most ", kMaxReduction,
                    " products per output (KH x KW x C_in/groups) fit int32 exactly, got ", s.reduction());
  s.out_h = conv_output_size(s.in_h, s.kernel_h, s.stride_h, s.pad_h, s.dilation_h);
  s.out_w = conv_output_size(s.in_w, s.kernel_w, s.stride_w, s.pad_w, s.dilation_w);
  TORCH_CHECK(s.out_h > 0 && s.out_w > 0, op, ": input of spatial size ", input.sizes().slice(2), " is too small");

  // With fewer than 4 input channels (the stem's 3) a tap padded to 4 steps wastes the rest.
  // Where each kernel row lies contiguous in memory the conv is read as row windows instead: a
  // (KH, 1) conv whose input pixel (y, x) is the KW x C_in bytes that output column x's kernel
  // row covers in input row y, rounded up to a multiple of 4 (the bytes read past the window
  // meet zero weights), over the input with its padding written out; the pixels of this view
  // overlap. The stem's kernel row: 6 quads instead of 7.
  const int64_t row_steps = (s.kernel_w * in_c_g + 3) / 4 * 4;
  const bool row_windows = groups == 1 && in_c_g < 4 && s.dilation_w == 1 && row_steps < s.kernel_w * in_c4;
  at::Tensor kernel_weight = weight;
  int64_t pixel_stride, row_stride, image_stride;  // of the input the kernel reads, once it is made
  // Where C_in/groups is not a multiple of 4 otherwise, the input is copied anyway, to append
  // zero channels: the padding is written out in the same copy. With so few channels each tap
  // is one quad, and a tile at the image's left or right edge, which reads tap by tap
  // (Int8TileRunner), costs several times one that reads whole kernel rows.
  at::Tensor x = nhwc(input);
  if (row_windows) {
    x = pad_uint8_input(input, 1, 0, s.pad_h, s.pad_w, static_cast<uint8_t>(input_zero_point),
                        row_steps - s.kernel_w * in_c_g);
    kernel_weight = int8_row_window_weight(weight, blocked, in_c_g, s.kernel_w);
    const int64_t padded_h = s.in_h + 2 * s.pad_h, padded_w = s.in_w + 2 * s.pad_w;
    pixel_stride = s.stride_w * in_c_g, row_stride = padded_w * in_c_g, image_stride = padded_h * row_stride;
    s.in_h = padded_h, s.in_w = s.out_w, s.in_c = row_steps, s.pad_h = 0, s.pad_w = 0;
    s.kernel_w = 1, s.stride_w = 1;
  } else if (in_c4 != in_c_g && (s.pad_h > 0 || s.pad_w > 0)) {
    x = pad_uint8_input(input, groups, in_c4 - in_c_g, s.pad_h, s.pad_w, static_cast<uint8_t>(input_zero_point));
    s.in_h += 2 * s.pad_h, s.in_w += 2 * s.pad_w, s.pad_h = 0, s.pad_w = 0;
  } else if (in_c4 != in_c_g) {
    x = append_zero_channels(x, groups, in_c4 - in_c_g);
  }
  if (!row_windows) pixel_stride = s.in_c, row_stride = s.in_w * pixel_stride, image_stride = s.in_h * row_stride;
  Output out({s.batch, s.out_c, s.out_h, s.out_w}, input);
  std::optional<at::Tensor> res;
  if (residual.has_value()) {
    check_uint8_activation(*residual, op, "residual");
    TORCH_CHECK_VALUE(residual->sizes() == out.result.sizes(), op, ": expected a residual of the output's shape ",
                      out.result.sizes(), ", got ", residual->sizes());
    res = nhwc(*residual);
  }
  if (s.pixels() == 0 || s.out_c == 0) return out.finish();
  const int64_t blocks = s.blocks_per_group();
  const std::vector<float> m = per_block<float>(multiplier, groups, blocks, s.block);
  const std::vector<float> b = per_block<float>(bias, groups, blocks, s.block);
  const std::vector<int32_t> c = per_block<int32_t>(compensation, groups, blocks, s.block);
  const Int8ConvTensors t{x.data_ptr<uint8_t>(), pixel_stride, row_stride, image_stride,
                          kernel_weight.const_data_ptr(), m.data(), b.data(),
                          c.data(), res ? res->data_ptr<uint8_t>() : nullptr,
                          static_cast<float>(residual_multiplier), static_cast<int32_t>(residual_zero_point),
                          static_cast<int32_t>(input_zero_point), static_cast<int32_t>(output_zero_point),
                          out.nhwc.data_ptr<uint8_t>(), relu};
  const ConvPlan plan = kernels.plan(s, at::get_num_threads());
  run_items_as_threads_free(plan.items(s), [&](int64_t item) { kernels.run(s, t, plan, item, item + 1); });
  return out.finish();
}

// The int8 family's memory-bound ops, each one pass in plain C++ (the compiler vectorizes the
// loops) with the arithmetic of ops/int8_reference.py, bit for bit; in PyTorch they took 2 ms
// of a 15 ms ResNet-50 int8 model.

// The loops below take their pointers as restrict parameters and their bounds by value: a
// uint8 store may alias anything, so through captured references the compiler kept them scalar.

// Quantizes `count` floats; false if any is NaN or infinite. Adding and taking away 1.5 * 2^23
// rounds a float of magnitude below 2^22 to an integer, half to even (the default rounding
// mode); t is clamped to +-512 first, which changes no result (the output saturates beyond).
// Without "no-trapping-math" GCC keeps float compares as branches and the loop scalar (4x
// slower); it changes no value, only whether a compare may raise a floating-point flag.
__attribute__((optimize("no-trapping-math"))) bool quantize_run(const float* __restrict in, uint8_t* __restrict out,
                                                                int64_t count, float divisor, float offset) {
  constexpr float kRound = 12582912.0f;
  int all_finite = 1;
  for (int64_t i = 0; i < count; ++i) {
    all_finite &= (in[i] - in[i]) == 0.0f;  // NaN for NaN and infinities
    float t = in[i] / divisor;
    t = t < -512.0f ? -512.0f : t > 512.0f ? 512.0f : t;
    float q = (t + kRound) - kRound + offset;
    q = q < 0.0f ? 0.0f : q > 255.0f ? 255.0f : q;
    out[i] = static_cast<uint8_t>(static_cast<int32_t>(q));
  }
  return all_finite;
}

void max_into(uint8_t* __restrict best, const uint8_t* __restrict tap, int64_t count) {
  for (int64_t i = 0; i < count; ++i) best[i] = tap[i] > best[i] ? tap[i] : best[i];
}

void add_bytes_into(int32_t* __restrict sums, const uint8_t* __restrict bytes, int64_t count) {
  for (int64_t i = 0; i < count; ++i) sums[i] += bytes[i];
}

// float -> uint8: clamp(round_half_even(input / scale) + zero_point, 0, 255), in float32.
at::Tensor quantize_op(const at::Tensor& input, double scale, int64_t zero_point) {
  const char* op = "fastresnet::cpp_quantize";
  TORCH_CHECK_TYPE(input.is_floating_point(), op, ": expected a floating-point tensor to quantize, got ",
                   input.scalar_type());
  TORCH_CHECK_VALUE(scale > 0 && std::isfinite(scale), op, ": expected a finite scale > 0, got ", scale);
  check_uint8_zero_point(zero_point, op, "zero_point");
  const at::Tensor x = input.to(at::kFloat).contiguous(output_format(input));
  at::Tensor out = at::empty_like(x, x.options().dtype(at::kByte));
  const float* in = x.const_data_ptr<float>();
  uint8_t* q = out.mutable_data_ptr<uint8_t>();
  const float divisor = static_cast<float>(scale), offset = static_cast<float>(zero_point);
  std::atomic<bool> finite{true};
  at::parallel_for(0, x.numel(), 1 << 16, [&](int64_t begin, int64_t end) {
    if (!quantize_run(in + begin, q + begin, end - begin, divisor, offset)) finite = false;
  });
  TORCH_CHECK_VALUE(finite, op, ": the input holds NaN or infinite values, which have no uint8 value; ",
                    "an int8 model takes finite input only");
  return out;
}

// The max pool on uint8: exact, so the output keeps the input's scale and zero point. Each
// window has a tap inside the image (padding <= kernel / 2), so 0 is a safe start.
at::Tensor int8_max_pool2d_op(const at::Tensor& input, at::IntArrayRef kernel_size, at::IntArrayRef stride,
                              at::IntArrayRef padding, at::IntArrayRef dilation, bool ceil_mode) {
  const char* op = "fastresnet::cpp_int8_max_pool2d";
  check_uint8_activation(input, op, "input");
  const PoolShape s = checked_pool_shape(input, kernel_size, stride, padding, dilation, ceil_mode, op);
  const at::Tensor x = nhwc(input);
  Output out({s.batch, s.channels, s.out_h, s.out_w}, input);
  const uint8_t* in = x.const_data_ptr<uint8_t>();
  uint8_t* result = out.nhwc.mutable_data_ptr<uint8_t>();
  const int64_t c = s.channels;
  at::parallel_for(0, s.batch * s.out_h * s.out_w, 16, [&](int64_t begin, int64_t end) {
    for (int64_t m = begin; m < end; ++m) {
      const int64_t x_out = m % s.out_w, y_out = (m / s.out_w) % s.out_h, n = m / (s.out_w * s.out_h);
      uint8_t* best = result + m * c;
      std::fill(best, best + c, uint8_t(0));
      for (int64_t kh = 0; kh < s.kernel_h; ++kh) {
        const int64_t iy = y_out * s.stride_h - s.pad_h + kh * s.dilation_h;
        if (iy < 0 || iy >= s.in_h) continue;
        for (int64_t kw = 0; kw < s.kernel_w; ++kw) {
          const int64_t ix = x_out * s.stride_w - s.pad_w + kw * s.dilation_w;
          if (ix < 0 || ix >= s.in_w) continue;
          max_into(best, in + ((n * s.in_h + iy) * s.in_w + ix) * c, c);
        }
      }
    }
  });
  return out.finish();
}

// uint8 (N, C, H, W) -> float32 (N, C): scale * (sum - zero_point * pixels) / pixels, the sum
// exact in int32 (below 2^31 up to 8M pixels, checked) and the rest in float64, one rounding
// to float32 at the end.
at::Tensor dequantize_global_avg_pool_op(const at::Tensor& input, double scale, int64_t zero_point) {
  const char* op = "fastresnet::cpp_dequantize_global_avg_pool";
  check_uint8_activation(input, op, "input");
  TORCH_CHECK_VALUE(input.size(2) > 0 && input.size(3) > 0, op, ": expected a non-empty H x W plane, got shape ",
                    input.sizes());
  const at::Tensor x = nhwc(input);
  const int64_t channels = input.size(1), pixels = input.size(2) * input.size(3);
  TORCH_CHECK_VALUE(pixels <= std::numeric_limits<int32_t>::max() / 255, op, ": at most ",
                    std::numeric_limits<int32_t>::max() / 255, " pixels per image, got ", pixels);
  at::Tensor out = at::empty({input.size(0), channels}, input.options().dtype(at::kFloat));
  const uint8_t* in = x.const_data_ptr<uint8_t>();
  float* mean = out.mutable_data_ptr<float>();
  const double offset = static_cast<double>(zero_point * pixels);
  at::parallel_for(0, input.size(0), 1, [&](int64_t begin, int64_t end) {
    std::vector<int32_t> sums(channels);
    for (int64_t n = begin; n < end; ++n) {
      std::fill(sums.begin(), sums.end(), 0);
      const uint8_t* image = in + n * pixels * channels;
      for (int64_t p = 0; p < pixels; ++p) add_bytes_into(sums.data(), image + p * channels, channels);
      for (int64_t ch = 0; ch < channels; ++ch)
        mean[n * channels + ch] = static_cast<float>(scale * (static_cast<double>(sums[ch]) - offset) / pixels);
    }
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(fastresnet, CPU, m) {
  m.impl("cpp_int8_conv2d", &int8_conv2d);
  m.impl("cpp_quantize", &quantize_op);
  m.impl("cpp_int8_max_pool2d", &int8_max_pool2d_op);
  m.impl("cpp_dequantize_global_avg_pool", &dequantize_global_avg_pool_op);
  m.impl("cpp_conv2d_bias_act", &conv2d_bias_act);
  m.impl("cpp_add_relu", &add_relu_op);
  m.impl("cpp_max_pool2d", &max_pool2d_op);
  m.impl("cpp_global_avg_pool", &global_avg_pool_op);
}

}  // namespace fastresnet::cpu
