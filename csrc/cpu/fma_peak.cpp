// The peak probes' driver: each thread runs the active tier's fma_chains, bf16_dot_chains or
// the int8 kernels' dot_chains (tier_table.h, tier_<name>.cpp).
#include "fma_peak.h"

#include <chrono>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <vector>

#include "tiers.h"

namespace fastresnet::cpu {

namespace {

const CpuTier& probe_tier() {
  const CpuTier* tier = active_tier();
  if (tier == nullptr) throw std::runtime_error("no CPU kernel tier is active: " + no_active_tier_reason());
  return *tier;
}

// GFLOP/s of `threads` threads running chains(iterations), each iteration `flops` FLOPs.
double chains_gflops(float (*chains)(int64_t), double flops_per_iteration, int threads, int64_t iterations) {
  if (threads < 1 || iterations < 1) throw std::invalid_argument("threads and iterations must be >= 1");
  std::vector<float> sinks(threads);
  std::vector<std::thread> workers;
  const auto start = std::chrono::steady_clock::now();
  for (int t = 0; t < threads; ++t) workers.emplace_back([&, t] { sinks[t] = chains(iterations); });
  for (auto& worker : workers) worker.join();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  volatile float sink = 0;
  for (float s : sinks) sink = sink + s;
  return flops_per_iteration * static_cast<double>(iterations) * threads / seconds / 1e9;
}

}  // namespace

double fma_peak_gflops(int threads, int64_t iterations) {
  const CpuTier& tier = probe_tier();
  // An FMA is 2 FLOPs per lane.
  return chains_gflops(tier.fma_chains, 2.0 * tier.lanes * kFmaChains, threads, iterations);
}

std::string bf16_dot_unsupported_reason() {
  const CpuTier* tier = active_tier();
  if (tier == nullptr) return "no CPU kernel tier is active: " + no_active_tier_reason();
  if (tier->bf16_dot_chains == nullptr) return std::string("the ") + tier->name() + " tier has no bf16 dot-product probe";
  std::istringstream wanted(tier->facts.bf16_dot_features);
  const auto& features = cpu_features();
  for (std::string feature; wanted >> feature;) {
    const auto it = features.find(feature);
    if (it == features.end() || !it->second) return "this CPU lacks " + feature + " (bf16 dot products)";
  }
  return "";
}

double bf16_dot_peak_gflops(int threads, int64_t iterations) {
  const std::string reason = bf16_dot_unsupported_reason();
  if (!reason.empty()) throw std::runtime_error(reason);
  const CpuTier& tier = probe_tier();
  // Each lane takes two products and adds them: 4 FLOPs per lane, as two FMAs would.
  return chains_gflops(tier.bf16_dot_chains, 4.0 * tier.lanes * kFmaChains, threads, iterations);
}

double int8_dot_peak_gops(int threads, int64_t iterations) {
  const CpuTier& tier = probe_tier();
  // The faster kernels' products: the narrow ones where the tier has them (quantize()'s default there).
  const Int8Kernels& int8 = tier.int8_narrow.run != nullptr ? tier.int8_narrow : tier.int8;
  // Four products per int32 lane, each a multiply and an add.
  return chains_gflops(int8.dot_chains, 8.0 * (int8.block / 2) * kFmaChains, threads, iterations);
}

}  // namespace fastresnet::cpu
