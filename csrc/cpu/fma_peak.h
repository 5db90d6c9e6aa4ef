// The machine's peaks, measured with the active tier's vectors: what "% of peak" in the
// benchmark report divides by.
#pragma once

#include <cstdint>
#include <string>

namespace fastresnet::cpu {

// GFLOP/s of `threads` threads each running `iterations` rounds of kFmaChains vector FMAs of
// the active tier. Throws std::runtime_error on a CPU that runs no tier.
double fma_peak_gflops(int threads, int64_t iterations);

// The same with the active tier's bf16 dot products into fp32 (each multiply and add counted
// as 2 FLOPs, as for the FMA). Throws std::runtime_error, saying why, where the tier has no
// such probe or the CPU lacks what it needs (bf16_dot_unsupported_reason()).
double bf16_dot_peak_gflops(int threads, int64_t iterations);

// GOP/s of the active tier's int8 conv products (u8 x s8 into int32, each multiply and add
// counted as 2 operations): VPDPBUSD on the VNNI tiers, VPMADDWD pairs on the others.
double int8_dot_peak_gops(int threads, int64_t iterations);

// Why bf16_dot_peak_gflops() cannot run here, or "".
std::string bf16_dot_unsupported_reason();

}  // namespace fastresnet::cpu
