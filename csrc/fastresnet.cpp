// The compiled extension's entry point: fastresnet._C.
//
// Build information and the CPU kernels' tiers and weight layouts; the C++ CPU and CUDA
// kernels register themselves with TORCH_LIBRARY_IMPL(fastresnet, CPU|CUDA) in their own
// files (csrc/cpu/ops.cpp, csrc/cuda/ops.cpp), and Python asks the dispatcher which exist.
#include <torch/extension.h>

#include <string>
#include <vector>

#include "cpu/fma_peak.h"
#include "cpu/layouts.h"
#include "cpu/output_cache.h"
#include "cpu/tiers.h"

namespace {

py::dict build_info() {
  py::dict info;
  info["torch_version"] = TORCH_VERSION;
#if defined(__clang__)
  info["compiler"] = std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
  info["compiler"] = std::string("gcc ") + __VERSION__;
#else
  info["compiler"] = "unknown";
#endif
  // The CPU kernels are compiled once per tier (csrc/cpu/tier_<name>.cpp, a target pragma
  // each); the active one is chosen at load; they run on ATen's thread pool.
  py::list tiers;
  for (const auto* tier : fastresnet::cpu::compiled_tiers()) tiers.append(tier->name());
  info["cpu_tiers"] = tiers;
  const auto* active = fastresnet::cpu::active_tier();
  info["cpu_isa"] = active != nullptr ? py::cast(std::string(active->name())) : py::none();
  info["cpu_threads"] = "ATen parallel_for (OpenMP in torch's builds)";
#if defined(FASTRESNET_WITH_CUDA)
  info["cuda"] = true;
#else
  info["cuda"] = false;
#endif
  return info;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  namespace cpu = fastresnet::cpu;
  m.doc() = "fastresnet compiled kernels";
  m.def("build_info", &build_info, "How this extension was built and which kernels it holds.");
  m.def("fma_peak_gflops", &cpu::fma_peak_gflops, py::arg("threads"), py::arg("iterations"),
        "Measured fp32 FMA peak (GFLOP/s) of `threads` threads with the active tier's vectors.");
  m.def("bf16_dot_peak_gflops", &cpu::bf16_dot_peak_gflops, py::arg("threads"), py::arg("iterations"),
        "Measured bf16 dot-product peak (GFLOP/s, into fp32) of `threads` threads with the active "
        "tier's vectors; RuntimeError where the tier or the CPU has none.");
  m.def("int8_dot_peak_gops", &cpu::int8_dot_peak_gops, py::arg("threads"), py::arg("iterations"),
        "Measured int8 dot-product peak (GOP/s, u8 x s8 into int32) of `threads` threads with the active "
        "tier's faster int8 conv products (its int8-7bit kernels' where it has them).");
  m.def("bf16_dot_unsupported_reason", &cpu::bf16_dot_unsupported_reason,
        "Why bf16_dot_peak_gflops() cannot run here, or ''.");
  m.def(
      "cpu_tiers",
      [] {
        py::list tiers;
        for (const auto* tier : cpu::compiled_tiers()) {
          const cpu::TierFacts& f = tier->facts;
          py::dict t;
          t["name"] = f.name;
          t["features"] = f.features;
          t["os_state"] = f.os_state;
          t["rank"] = f.rank;
          t["dtypes"] = f.dtypes;
          t["lanes"] = tier->lanes;
          t["block"] = tier->block;
          t["bf16_conv"] = tier->bf16_conv;
          t["bf16_widens"] = tier->bf16_widens;
          t["int8_conv"] = tier->int8.name;
          t["int8_narrow_conv"] = tier->int8_narrow.run != nullptr ? py::cast(std::string(tier->int8_narrow.name))
                                                                   : py::none();
          t["winograd4x4_max_channels"] = f.winograd4x4_limit(false);
          t["winograd2x2_max_channels"] = f.winograd2x2_limit(false);
          t["bf16_winograd4x4_max_channels"] = f.winograd4x4_limit(true);
          t["bf16_winograd2x2_max_channels"] = f.winograd2x2_limit(true);
          t["unsupported_reason"] = cpu::tier_unsupported_reason(*tier);
          tiers.append(t);
        }
        return tiers;
      },
      "The compiled CPU kernel tiers, highest rank first: their facts (tier_<name>.cpp) and why "
      "each cannot run here ('' if it can).");
  m.def("cpu_features", &cpu::cpu_features,
        "This CPU's features (CPUID; FASTRESNET_CPU_HIDE masks some) and whether the OS saves the "
        "ymm/zmm state (XGETBV).");
  m.def(
      "cpu_isa",
      [] {
        const auto* tier = cpu::active_tier();
        return tier != nullptr ? py::cast(std::string(tier->name())) : py::none();
      },
      "The active CPU tier's name, or None (cpu_isa_error() says why).");
  m.def("cpu_isa_error", &cpu::no_active_tier_reason,
        "Why there is no active CPU tier (FASTRESNET_CPU_ISA refused, or none runs here), or ''.");
  m.def("cpu_isa_choice", &cpu::active_tier_choice, "How the active CPU tier was chosen.");
  m.def("set_cpu_isa", &cpu::set_active_tier, py::arg("name"),
        "Make tier `name` the active one (the ops' tier for 'oihw' weights, pooling, add+ReLU); '' "
        "returns to the choice made at load (FASTRESNET_CPU_ISA, else the highest-ranked that runs).");
  m.def(
      "weight_layouts",
      [] {
        py::list layouts;
        for (const auto& layout : cpu::weight_layouts()) {
          py::dict l;
          l["name"] = layout.name;
          l["tier"] = layout.tier != nullptr ? py::cast(std::string(layout.tier->name())) : py::none();
          l["algorithm"] = layout.algorithm();
          l["winograd_tile"] = layout.m != 0 ? py::cast(layout.m) : py::none();
          const auto dtype_name = [](at::ScalarType t) {
            return t == at::kBFloat16 ? "bfloat16" : t == at::kShort  ? "int16"
                   : t == at::kChar ? "int8"
                   : t == at::kByte ? "uint8"
                                    : "float32";
          };
          const bool logical = layout.kind == cpu::WeightLayout::kLogical;
          l["dtype"] = logical ? py::none() : py::cast(std::string(dtype_name(layout.dtype())));
          py::list activations;
          if (!logical) {
            for (at::ScalarType t : layout.activation_dtypes()) activations.append(dtype_name(t));
          }
          l["activation_dtypes"] = py::tuple(activations);
          l["pads_input_channel"] = layout.pad_in != 0;
          l["int8_weight_bound"] = layout.int8 != nullptr ? py::cast(layout.int8->weight_bound) : py::none();
          layouts.append(l);
        }
        return layouts;
      },
      "Every weight layout of this build (csrc/cpu/layouts.h): name, tier, algorithm, winograd_tile, dtype "
      "(the weight's; None for the logical layout: any), activation_dtypes (() for the logical layout: any), "
      "pads_input_channel.");
  m.def(
      "conv_weight_geometry",
      [](const std::string& layout, std::vector<int64_t> sizes, int64_t out_c, int64_t groups) {
        return cpu::weight_geometry(cpu::find_layout(layout, "conv_weight_geometry"), sizes, out_c, groups,
                                    "conv_weight_geometry");
      },
      py::arg("layout"), py::arg("sizes"), py::arg("out_channels"), py::arg("groups"),
      "(C_out, C_in/groups, KH, KW) of a weight of shape `sizes` in `layout`; ValueError if it "
      "does not fit the layout.");
  m.def(
      "winograd_fits",
      [](const std::string& tier, int64_t out_c, int64_t in_c, int64_t kh, int64_t kw, std::vector<int64_t> stride,
         std::vector<int64_t> dilation, int64_t groups) {
        const auto* t = cpu::find_tier(tier);
        TORCH_CHECK_VALUE(t != nullptr, "winograd_fits: unknown CPU tier '", tier, "'");
        return cpu::winograd_fits(*t, out_c, in_c, kh, kw, stride, dilation, groups);
      },
      py::arg("tier"), py::arg("out_channels"), py::arg("in_channels"), py::arg("kernel_h"), py::arg("kernel_w"),
      py::arg("stride"), py::arg("dilation"), py::arg("groups"),
      "Whether the tier's Winograd kernels take this conv (3x3, stride 1, undilated, ungrouped, "
      "channels in whole vectors and blocks).");
  m.def(
      "bf16_conv_layout",
      [](const std::string& tier, int64_t in_c_per_group) {
        const auto* t = cpu::find_tier(tier);
        TORCH_CHECK_VALUE(t != nullptr, "bf16_conv_layout: unknown CPU tier '", tier, "'");
        return cpu::tier_layout_bf16(*t, in_c_per_group).name;
      },
      py::arg("tier"), py::arg("in_channels_per_group"),
      "The name of the tier's direct bf16 conv layout for this many input channels per group.");
  m.def(
      "pack_conv_weight",
      [](const at::Tensor& weight, int64_t groups, const std::string& layout) {
        return cpu::pack_weight(weight, groups, cpu::find_layout(layout, "pack_conv_weight"), "pack_conv_weight");
      },
      py::arg("weight"), py::arg("groups"), py::arg("layout"),
      "A conv weight (C_out, C_in/groups, KH, KW) in a named layout of the CPU kernels (csrc/cpu/layouts.h).");
  m.def(
      "unpack_conv_weight",
      [](const at::Tensor& weight, const std::string& layout, int64_t out_c, int64_t groups) {
        return cpu::unpack_weight(weight, cpu::find_layout(layout, "unpack_conv_weight"), out_c, groups);
      },
      py::arg("weight"), py::arg("layout"), py::arg("out_channels"), py::arg("groups"),
      "The logical weight (C_out, C_in/groups, KH, KW) back from one in a packed layout.");
  m.def("cpu_cached_output_bytes", &cpu::cached_output_bytes,
        "Bytes of freed CPU kernel outputs held for reuse (at most 512 MiB).");
  m.def("cpu_release_cached_outputs", &cpu::release_cached_outputs,
        "Return the cached CPU kernel output memory to the system; the bytes released.");
}
