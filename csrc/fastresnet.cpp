// The compiled extension's entry point: fastresnet._C.
//
// For now it carries build information only; the C++ CPU and CUDA kernels register
// themselves with TORCH_LIBRARY_IMPL(fastresnet, CPU|CUDA) in their own files and add
// their names to kernel_names() below, which is how the Python side knows they exist.
#include <torch/extension.h>

#include <string>
#include <vector>

#include "cpu/fma_peak.h"

namespace {

std::vector<std::string> kernel_names() {
  std::vector<std::string> names;
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
#if defined(__AVX2__) && defined(__FMA__)
  info["avx2_fma"] = true;
#else
  info["avx2_fma"] = false;
#endif
#if defined(_OPENMP)
  info["openmp"] = true;
#else
  info["openmp"] = false;
#endif
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
}
