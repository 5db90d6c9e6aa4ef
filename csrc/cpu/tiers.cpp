// The tier registry: CPU features from CPUID/XGETBV, and the active tier. Generic code: no
// target pragma here, so it runs on any CPU (it is what decides which kernels may run).
#include "tiers.h"

#include <atomic>
#include <sstream>
#include <stdexcept>

#if defined(__x86_64__)
#include <cpuid.h>
#endif

namespace fastresnet::cpu {

std::vector<const CpuTier*> compiled_tiers() {
  std::vector<const CpuTier*> tiers;
  for (const CpuTier* tier : {avx512_tier(), avx2_tier()}) {
    if (tier != nullptr) tiers.push_back(tier);
  }
  return tiers;
}

const CpuTier* find_tier(const std::string& name) {
  for (const CpuTier* tier : compiled_tiers()) {
    if (name == tier->name) return tier;
  }
  return nullptr;
}

std::map<std::string, bool> cpu_features() {
  std::map<std::string, bool> f;
#if defined(__x86_64__)
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  const bool osxsave = c & (1u << 27);
  f["fma"] = c & (1u << 12);
  f["avx"] = c & (1u << 28);
  unsigned long long xcr0 = 0;
  if (osxsave) {
    unsigned lo = 0, hi = 0;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    xcr0 = (static_cast<unsigned long long>(hi) << 32) | lo;
  }
  f["os_ymm"] = (xcr0 & 0x6) == 0x6;    // SSE and AVX state
  f["os_zmm"] = (xcr0 & 0xe6) == 0xe6;  // ... and opmask, ZMM0-15 upper halves, ZMM16-31
  a = b = c = d = 0;
  __get_cpuid_count(7, 0, &a, &b, &c, &d);
  f["avx2"] = b & (1u << 5);
  f["avx512f"] = b & (1u << 16);
  f["avx512dq"] = b & (1u << 17);
  f["avx512bw"] = b & (1u << 30);
  f["avx512vl"] = b & (1u << 31);
  f["avx512_vnni"] = c & (1u << 11);
  a = b = c = d = 0;
  __get_cpuid_count(7, 1, &a, &b, &c, &d);
  f["avx512_bf16"] = a & (1u << 5);
#endif
  return f;
}

namespace {

std::string compute_unsupported_reason(const CpuTier& tier) {
  static const std::map<std::string, bool> features = cpu_features();
  auto has = [&](const std::string& name) {
    const auto it = features.find(name);
    return it != features.end() && it->second;
  };
  std::vector<std::string> missing;
  std::istringstream wanted(tier.features);
  for (std::string feature; wanted >> feature;) {
    if (!has(feature)) missing.push_back(feature);
  }
  const char* state = tier.lanes > 8 ? "os_zmm" : "os_ymm";
  std::ostringstream reason;
  if (!missing.empty()) {
    reason << "the " << tier.name << " kernels need " << tier.features << "; this CPU lacks";
    for (const std::string& m : missing) reason << " " << m;
  } else if (!has(state)) {
    reason << "the CPU has " << tier.features << " but the OS does not save the "
           << (tier.lanes > 8 ? "zmm/opmask" : "ymm") << " register state (XGETBV), so the " << tier.name
           << " kernels cannot run";
  }
  return reason.str();
}

}  // namespace

// Asked on every conv call (parse_layout): computed once per tier, then looked up.
std::string tier_unsupported_reason(const CpuTier& tier) {
  static const std::map<const CpuTier*, std::string> reasons = [] {
    std::map<const CpuTier*, std::string> r;
    for (const CpuTier* t : compiled_tiers()) r[t] = compute_unsupported_reason(*t);
    return r;
  }();
  const auto it = reasons.find(&tier);
  return it != reasons.end() ? it->second : compute_unsupported_reason(tier);
}

namespace {

const CpuTier* widest_runnable() {
  for (const CpuTier* tier : compiled_tiers()) {
    if (tier_unsupported_reason(*tier).empty()) return tier;
  }
  return nullptr;
}

std::atomic<const CpuTier*>& active() {
  static std::atomic<const CpuTier*> tier{widest_runnable()};
  return tier;
}

}  // namespace

const CpuTier* active_tier() { return active().load(); }

void set_active_tier(const std::string& name) {
  const CpuTier* tier = find_tier(name);
  std::ostringstream known;
  for (const CpuTier* t : compiled_tiers()) {
    known << (known.tellp() > 0 ? ", " : "") << t->name << (tier_unsupported_reason(*t).empty() ? "" : " (not on this CPU)");
  }
  if (tier == nullptr) {
    throw std::invalid_argument("unknown CPU tier '" + name + "'; this build has: " +
                                (known.str().empty() ? std::string("none") : known.str()));
  }
  const std::string reason = tier_unsupported_reason(*tier);
  if (!reason.empty()) throw std::invalid_argument(reason);
  active().store(tier);
}

}  // namespace fastresnet::cpu
