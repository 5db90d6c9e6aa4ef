#pragma once

#include <cstdint>

namespace fastresnet::cpu {

// GFLOP/s of `threads` threads each running `iterations` rounds of 12 AVX2 FMA chains.
// Throws std::runtime_error on a CPU without AVX2/FMA.
double fma_peak_gflops(int threads, int64_t iterations);

}  // namespace fastresnet::cpu
