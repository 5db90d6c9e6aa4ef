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
  // The CPU kernels are compiled for AVX2+FMA file by file (a pragma in csrc/cpu) and check
  // the CPU when called; they run on ATen's thread pool, torch.get_num_threads() threads.
  info["cpu_kernels_isa"] = "avx2+fma";
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
        "Measured fp32 AVX2 FMA peak (GFLOP/s) of `threads` threads.");
  m.def("cpu_unsupported_reason", &fastresnet::cpu::unsupported_reason,
        "Why the C++ CPU kernels cannot run on this CPU, or an empty string if they can.");
  m.def("block_conv_weight", &fastresnet::cpu::block_conv_weight, py::arg("weight"), py::arg("groups"),
        "A conv weight (C_out, C_in/groups, KH, KW) in the CPU kernels' blocked layout "
        "(groups, ceil(C_out/groups/16), KH, KW, C_in/groups, 16).");
  m.def("cpu_cached_output_bytes", &fastresnet::cpu::cached_output_bytes,
        "Bytes of freed CPU kernel outputs held for reuse (at most 512 MiB).");
  m.def("cpu_release_cached_outputs", &fastresnet::cpu::release_cached_outputs,
        "Return the cached CPU kernel output memory to the system; the bytes released.");
  m.def("winograd_conv_weight", &fastresnet::cpu::winograd_conv_weight, py::arg("weight"),
        "A 3x3 conv weight (C_out, C_in, 3, 3) transformed for the CPU kernels' Winograd F(2x2, 3x3): "
        "(4, 4, C_out/16, C_in, 16).");
}
