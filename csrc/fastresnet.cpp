// The compiled extension's entry point: fastresnet._C.
//
// Build information and the CPU kernels' helpers; the C++ CPU and CUDA kernels register
// themselves with TORCH_LIBRARY_IMPL(fastresnet, CPU|CUDA) in their own files (csrc/cpu/ops.cpp,
// csrc/cuda/ops.cpp) and are listed by kernel_names() below, which is how the Python side
// knows they exist.
#include <torch/extension.h>

#include <string>
#include <vector>

#include "cpu/fma_peak.h"
#include "cpu/ops.h"
#include "cpu/output_cache.h"
#include "cpu/tiers.h"

namespace {

std::vector<std::string> kernel_names() {
  std::vector<std::string> names;
  // csrc/cpu/ops.cpp registers these for the CPU dispatch key.
  for (const char* op : {"conv2d_bias_act", "max_pool2d", "global_avg_pool", "add_relu"}) {
    names.push_back(std::string("cpu:") + op);
  }
#if defined(FASTRESNET_WITH_CUDA)
  // csrc/cuda/ops.cpp registers these for the CUDA dispatch key.
  for (const char* op : {"conv2d_bias_act", "max_pool2d", "global_avg_pool", "add_relu"}) {
    names.push_back(std::string("cuda:") + op);
  }
#endif
  return names;
}

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
  for (const auto* tier : fastresnet::cpu::compiled_tiers()) tiers.append(tier->name);
  info["cpu_tiers"] = tiers;
  const auto* active = fastresnet::cpu::active_tier();
  info["cpu_isa"] = active != nullptr ? py::cast(std::string(active->name)) : py::none();
  info["cpu_threads"] = "ATen parallel_for (OpenMP in torch's builds)";
#if defined(FASTRESNET_WITH_CUDA)
  info["cuda"] = true;
#else
  info["cuda"] = false;
#endif
  info["kernels"] = kernel_names();
  return info;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "fastresnet compiled kernels";
  m.def("build_info", &build_info, "How this extension was built and which kernels it holds.");
  m.def("fma_peak_gflops", &fastresnet::cpu::fma_peak_gflops, py::arg("threads"), py::arg("iterations"),
        "Measured fp32 FMA peak (GFLOP/s) of `threads` threads with the active tier's vectors.");
  m.def("cpu_unsupported_reason", &fastresnet::cpu::unsupported_reason,
        "Why the C++ CPU kernels cannot run on this CPU, or an empty string if they can.");
  m.def("pack_conv_weight", &fastresnet::cpu::pack_conv_weight, py::arg("weight"), py::arg("groups"),
        py::arg("layout"),
        "A conv weight (C_out, C_in/groups, KH, KW) in a named layout of the CPU kernels: 'oihw', "
        "'<tier>:blocked', '<tier>:winograd2x2' or '<tier>:winograd4x4' (see csrc/cpu/ops.h).");
  m.def("cpu_features", &fastresnet::cpu::cpu_features,
        "This CPU's features (CPUID) and whether the OS saves the ymm/zmm state (XGETBV).");
  m.def(
      "cpu_tiers",
      [] {
        py::list tiers;
        for (const auto* tier : fastresnet::cpu::compiled_tiers()) {
          py::dict t;
          t["name"] = tier->name;
          t["features"] = tier->features;
          t["lanes"] = tier->lanes;
          t["block"] = tier->block;
          t["unsupported_reason"] = fastresnet::cpu::tier_unsupported_reason(*tier);
          tiers.append(t);
        }
        return tiers;
      },
      "The compiled CPU kernel tiers, widest first: name, features, lanes, block, and why it "
      "cannot run here ('' if it can).");
  m.def("set_cpu_isa", &fastresnet::cpu::set_active_tier, py::arg("name"),
        "Make tier `name` the active one (the ops' tier for 'oihw' weights, pooling, add+ReLU).");
  m.def("cpu_cached_output_bytes", &fastresnet::cpu::cached_output_bytes,
        "Bytes of freed CPU kernel outputs held for reuse (at most 512 MiB).");
  m.def("cpu_release_cached_outputs", &fastresnet::cpu::release_cached_outputs,
        "Return the cached CPU kernel output memory to the system; the bytes released.");
}
