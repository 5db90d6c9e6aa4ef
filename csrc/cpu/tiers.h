// Which instruction-set tiers of the CPU kernels this build holds, which this CPU (and its
// OS) can run, and the one in use. No torch headers.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "kernels.h"

namespace fastresnet::cpu {

// Defined by tier_<name>.cpp; null where the tier is not compiled (another architecture).
const CpuTier* avx2_tier();
const CpuTier* avx512_tier();

// The compiled tiers, widest first.
std::vector<const CpuTier*> compiled_tiers();

// The tier called `name`, or null if this build has none of that name.
const CpuTier* find_tier(const std::string& name);

// What this CPU has, as /proc/cpuinfo names it (CPUID), and whether the OS saves the ymm and
// zmm register state across context switches (XGETBV): "os_ymm", "os_zmm". Empty off x86-64.
std::map<std::string, bool> cpu_features();

// Why `tier` cannot run on this CPU, or "" if it can.
std::string tier_unsupported_reason(const CpuTier& tier);

// The tier the ops use for weights in the logical layout, pooling and add + ReLU: the widest
// the CPU runs until set_active_tier() picks another. Null if the CPU runs none.
const CpuTier* active_tier();

// Makes `name` the active tier; throws std::invalid_argument naming what the CPU has if it
// is not compiled in or cannot run here.
void set_active_tier(const std::string& name);

}  // namespace fastresnet::cpu
