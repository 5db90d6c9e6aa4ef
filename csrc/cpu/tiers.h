// Which instruction-set tiers of the CPU kernels this build holds, which this CPU (and its
// OS) can run, and the one in use. The tiers register themselves (tier_table.h); this is
// the one place that reads the CPU and FASTRESNET_CPU_ISA. No torch headers.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "kernels.h"

namespace fastresnet::cpu {

// Called once per tier file when the extension loads (TierRegistration in tier_table.h).
void register_tier(const CpuTier* tier);

// The compiled tiers, highest rank first.
std::vector<const CpuTier*> compiled_tiers();

// The tier called `name`, or null if this build has none of that name.
const CpuTier* find_tier(const std::string& name);

// What this CPU has, as /proc/cpuinfo names it (CPUID), and whether the OS saves the ymm and
// zmm register state across context switches (XGETBV): "os_ymm", "os_zmm". Read once. The
// features named in FASTRESNET_CPU_HIDE (comma or space separated) read as absent: a smaller
// CPU faked for tests, or for trying another tier's path. Empty off x86-64.
const std::map<std::string, bool>& cpu_features();

// Why `tier` cannot run on this CPU, or "" if it can.
std::string tier_unsupported_reason(const CpuTier& tier);

// The tier the ops use for weights in the logical layout, pooling and add + ReLU. Chosen
// once, when first asked: the one FASTRESNET_CPU_ISA names if set, else the highest-ranked
// that runs here; set_active_tier() may pick another. Null if there is none.
const CpuTier* active_tier();

// Why there is no active tier ("" if there is one): FASTRESNET_CPU_ISA names a tier this
// build lacks or this CPU cannot run, or the CPU runs none.
std::string no_active_tier_reason();

// How the active tier was chosen, for explain().
std::string active_tier_choice();

// Makes `name` the active tier, or with "" returns to the choice made at load. Throws
// std::invalid_argument naming what the CPU runs if the tier is unknown or cannot run here.
void set_active_tier(const std::string& name);

}  // namespace fastresnet::cpu
