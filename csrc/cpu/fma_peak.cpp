// The FMA peak probe's driver: each thread runs the active tier's fma_chains (tier_table.h).
#include "fma_peak.h"

#include <chrono>
#include <stdexcept>
#include <thread>
#include <vector>

#include "tiers.h"

namespace fastresnet::cpu {

double fma_peak_gflops(int threads, int64_t iterations) {
  const CpuTier* tier = active_tier();
  if (tier == nullptr) throw std::runtime_error("this CPU runs none of the CPU kernel tiers: no FMA peak to measure");
  if (threads < 1 || iterations < 1) throw std::invalid_argument("threads and iterations must be >= 1");
  std::vector<float> sinks(threads);
  std::vector<std::thread> workers;
  const auto start = std::chrono::steady_clock::now();
  for (int t = 0; t < threads; ++t) workers.emplace_back([&, t] { sinks[t] = tier->fma_chains(iterations); });
  for (auto& worker : workers) worker.join();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  volatile float sink = 0;
  for (float s : sinks) sink = sink + s;
  // An FMA is 2 FLOPs per lane.
  const double flops = 2.0 * tier->lanes * kFmaChains * static_cast<double>(iterations) * threads;
  return flops / seconds / 1e9;
}

}  // namespace fastresnet::cpu
