// The machine's fp32 FMA peak, measured with the active tier's vectors: what "% of peak" in
// the benchmark report divides by.
#pragma once

#include <cstdint>

namespace fastresnet::cpu {

// GFLOP/s of `threads` threads each running `iterations` rounds of kFmaChains vector FMAs of
// the active tier. Throws std::runtime_error on a CPU that runs no tier.
double fma_peak_gflops(int threads, int64_t iterations);

}  // namespace fastresnet::cpu
