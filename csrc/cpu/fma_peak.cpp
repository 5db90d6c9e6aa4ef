// The machine's fp32 FMA peak, measured: what "% of peak" in the benchmark report divides by.
// Each thread runs 12 independent chains of 8-wide fused multiply-adds (enough to cover the
// FMA latency on both FMA pipes), so the loop is bound by FMA throughput alone.
#include <immintrin.h>

#include <chrono>
#include <stdexcept>
#include <thread>
#include <vector>

#include "fma_peak.h"

namespace fastresnet::cpu {
namespace {

constexpr int kChains = 12;

__attribute__((target("avx2,fma"))) float fma_chains(int64_t iterations) {
  __m256 acc[kChains];
  for (int j = 0; j < kChains; ++j) acc[j] = _mm256_set1_ps(1.0f + 0.01f * j);
  const __m256 scale = _mm256_set1_ps(0.999999f), shift = _mm256_set1_ps(1e-6f);
  for (int64_t i = 0; i < iterations; ++i) {
    for (int j = 0; j < kChains; ++j) acc[j] = _mm256_fmadd_ps(acc[j], scale, shift);
  }
  __m256 total = acc[0];
  for (int j = 1; j < kChains; ++j) total = _mm256_add_ps(total, acc[j]);
  float lanes[8];
  _mm256_storeu_ps(lanes, total);
  return lanes[0];  // used by the caller, so the loop cannot be optimised away
}

}  // namespace

double fma_peak_gflops(int threads, int64_t iterations) {
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) {
    throw std::runtime_error("this CPU has no AVX2/FMA: the FMA peak cannot be measured");
  }
  if (threads < 1 || iterations < 1) throw std::invalid_argument("threads and iterations must be >= 1");
  std::vector<float> sinks(threads);
  std::vector<std::thread> workers;
  const auto start = std::chrono::steady_clock::now();
  for (int t = 0; t < threads; ++t) workers.emplace_back([&, t] { sinks[t] = fma_chains(iterations); });
  for (auto& worker : workers) worker.join();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  volatile float sink = 0;
  for (float s : sinks) sink = sink + s;
  const double flops = 2.0 * 8 * kChains * static_cast<double>(iterations) * threads;  // FMA = 2 FLOPs x 8 lanes
  return flops / seconds / 1e9;
}

}  // namespace fastresnet::cpu
