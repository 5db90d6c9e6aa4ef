// The tier registry: CPU features from CPUID/XGETBV, and the active tier. Generic code: no
// target pragma here, so it runs on any CPU (it is what decides which kernels may run).
#include "tiers.h"

#include <algorithm>
#include <cstdlib>
#include <mutex>
#include <sstream>
#include <stdexcept>

#if defined(__x86_64__)
#include <cpuid.h>
#endif

namespace fastresnet::cpu {

namespace {

constexpr const char* kEnvCpuIsa = "FASTRESNET_CPU_ISA";
constexpr const char* kEnvCpuHide = "FASTRESNET_CPU_HIDE";

std::vector<const CpuTier*>& registry() {
  static std::vector<const CpuTier*> tiers;
  return tiers;
}

std::map<std::string, bool> read_cpu_features() {
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
  f["amx_bf16"] = d & (1u << 22);
  f["amx_tile"] = d & (1u << 24);
  f["amx_int8"] = d & (1u << 25);
  a = b = c = d = 0;
  __get_cpuid_count(7, 1, &a, &b, &c, &d);
  f["avx512_bf16"] = a & (1u << 5);
#endif
  if (const char* hidden = std::getenv(kEnvCpuHide)) {
    std::string names(hidden);
    std::replace(names.begin(), names.end(), ',', ' ');
    std::istringstream words(names);
    for (std::string name; words >> name;) f[name] = false;
  }
  return f;
}

bool has_feature(const std::string& name) {
  const auto& features = cpu_features();
  const auto it = features.find(name);
  return it != features.end() && it->second;
}

std::string compute_unsupported_reason(const CpuTier& tier) {
  const TierFacts& t = tier.facts;
  std::vector<std::string> missing;
  std::istringstream wanted(t.features);
  for (std::string feature; wanted >> feature;) {
    if (!has_feature(feature)) missing.push_back(feature);
  }
  std::ostringstream reason;
  if (!missing.empty()) {
    reason << "the " << t.name << " kernels need " << t.features << "; this CPU lacks";
    for (const std::string& m : missing) reason << " " << m;
  } else if (!has_feature(std::string("os_") + t.os_state)) {
    reason << "the CPU has " << t.features << " but the OS does not save the " << t.os_state
           << " register state (XGETBV), so the " << t.name << " kernels cannot run";
  }
  return reason.str();
}

// The CPU's flags that some tier needs, for error messages: those it has, or "none of" them all.
std::string relevant_flags() {
  std::vector<std::string> wanted, present;
  for (const CpuTier* tier : compiled_tiers()) {
    std::istringstream words(tier->facts.features);
    for (std::string w; words >> w;) {
      if (std::find(wanted.begin(), wanted.end(), w) == wanted.end()) wanted.push_back(w);
    }
  }
  for (const std::string& w : wanted) {
    if (has_feature(w)) present.push_back(w);
  }
  std::ostringstream out;
  const std::vector<std::string>& shown = present.empty() ? wanted : present;
  if (present.empty()) out << "none of";
  for (const std::string& w : shown) out << (out.tellp() > 0 ? " " : "") << w;
  return out.str();
}

// "this CPU runs <tiers> (its flags: <flags>)".
std::string what_runs() {
  std::ostringstream runs;
  for (const CpuTier* t : compiled_tiers()) {
    if (tier_unsupported_reason(*t).empty()) runs << (runs.tellp() > 0 ? ", " : "") << t->name();
  }
  return "this CPU runs " + (runs.tellp() > 0 ? runs.str() : std::string("no tier")) + " (its flags: " +
         relevant_flags() + ")";
}

std::string compiled_names() {
  std::ostringstream names;
  for (const CpuTier* t : compiled_tiers()) names << (names.tellp() > 0 ? ", " : "") << t->name();
  return names.tellp() > 0 ? names.str() : std::string("none");
}

struct Choice {
  const CpuTier* tier = nullptr;
  std::string error;  // why tier is null
  std::string how;    // how tier was chosen
};

// The tier `name` names, or why it cannot be used; `source` says who asked, for the messages.
Choice choose(const std::string& name, const std::string& source) {
  const CpuTier* tier = find_tier(name);
  if (tier == nullptr) {
    return {nullptr, source + " is not a CPU kernel tier of this build; it has " + compiled_names() + ", and " +
                         what_runs(), ""};
  }
  const std::string reason = tier_unsupported_reason(*tier);
  if (!reason.empty()) return {nullptr, source + " asks for a tier this CPU cannot run: " + reason + "; " + what_runs(), ""};
  return {tier, "", ""};
}

Choice load_time_choice() {
  const char* requested = std::getenv(kEnvCpuIsa);
  if (requested != nullptr && *requested != '\0') {
    Choice c = choose(requested, std::string(kEnvCpuIsa) + "=" + requested);
    c.how = "chosen by " + std::string(kEnvCpuIsa) + "=" + requested;
    return c;
  }
  for (const CpuTier* tier : compiled_tiers()) {
    if (tier_unsupported_reason(*tier).empty()) {
      return {tier, "", std::string("the widest this CPU runs (") + kEnvCpuIsa + " can cap it)"};
    }
  }
  std::string reason = compiled_tiers().empty()
                           ? "the C++ CPU kernels are written for x86-64; this build has no tier for this CPU"
                           : "this CPU runs none of the C++ CPU kernel tiers:";
  for (const CpuTier* tier : compiled_tiers()) reason += " " + tier_unsupported_reason(*tier) + ";";
  if (reason.back() == ';') reason.pop_back();
  return {nullptr, reason, ""};
}

std::mutex& choice_mutex() {
  static std::mutex m;
  return m;
}

Choice& current() {
  static Choice choice = load_time_choice();
  return choice;
}

}  // namespace

void register_tier(const CpuTier* tier) {
  auto& tiers = registry();
  tiers.push_back(tier);
  std::stable_sort(tiers.begin(), tiers.end(),
                   [](const CpuTier* a, const CpuTier* b) { return a->facts.rank > b->facts.rank; });
}

std::vector<const CpuTier*> compiled_tiers() { return registry(); }

const CpuTier* find_tier(const std::string& name) {
  for (const CpuTier* tier : registry()) {
    if (name == tier->name()) return tier;
  }
  return nullptr;
}

const std::map<std::string, bool>& cpu_features() {
  static const std::map<std::string, bool> features = read_cpu_features();
  return features;
}

// Asked on every conv call: computed once per tier, then looked up.
std::string tier_unsupported_reason(const CpuTier& tier) {
  static const std::map<const CpuTier*, std::string> reasons = [] {
    std::map<const CpuTier*, std::string> r;
    for (const CpuTier* t : compiled_tiers()) r[t] = compute_unsupported_reason(*t);
    return r;
  }();
  const auto it = reasons.find(&tier);
  return it != reasons.end() ? it->second : compute_unsupported_reason(tier);
}

const CpuTier* active_tier() {
  std::lock_guard<std::mutex> lock(choice_mutex());
  return current().tier;
}

std::string no_active_tier_reason() {
  std::lock_guard<std::mutex> lock(choice_mutex());
  return current().error;
}

std::string active_tier_choice() {
  std::lock_guard<std::mutex> lock(choice_mutex());
  return current().how;
}

void set_active_tier(const std::string& name) {
  Choice c = name.empty() ? load_time_choice() : choose(name, "CPU tier '" + name + "'");
  if (!name.empty()) {
    if (c.tier == nullptr) throw std::invalid_argument(c.error);
    c.how = "set by fastresnet._ext.set_cpu_isa('" + name + "')";
  }
  std::lock_guard<std::mutex> lock(choice_mutex());
  current() = c;
}

}  // namespace fastresnet::cpu
