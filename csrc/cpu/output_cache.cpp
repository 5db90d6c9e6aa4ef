// See output_cache.h.
#include "output_cache.h"

#include <ATen/EmptyTensor.h>
#include <c10/core/Allocator.h>

#include <cstdlib>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace fastresnet::cpu {
namespace {

// A block starts with a header holding its size; the data follows, 64-byte aligned.
constexpr size_t kHeader = 64;
constexpr size_t kGranule = 4096;  // sizes are rounded up to this, so near sizes share blocks

class OutputCache final : public c10::Allocator {
 public:
  c10::DataPtr allocate(size_t n) override {
    const size_t bytes = (n + kGranule - 1) / kGranule * kGranule;
    void* block = take(bytes);
    if (block == nullptr) {
      TORCH_CHECK(posix_memalign(&block, kHeader, kHeader + bytes) == 0, "fastresnet: out of memory allocating ",
                  bytes, " bytes for a kernel output");
      *static_cast<size_t*>(block) = bytes;
    }
    return {static_cast<char*>(block) + kHeader, block, &OutputCache::give_back,
            c10::Device(c10::DeviceType::CPU)};
  }

  void copy_data(void* dest, const void* src, size_t count) const override { default_copy_data(dest, src, count); }

  size_t cached() {
    std::lock_guard<std::mutex> lock(mutex_);
    return cached_;
  }

  size_t release() {
    std::lock_guard<std::mutex> lock(mutex_);
    const size_t released = cached_;
    for (auto& [bytes, blocks] : free_) {
      for (void* block : blocks) std::free(block);
    }
    free_.clear();
    cached_ = 0;
    return released;
  }

 private:
  static void give_back(void* block);

  void* take(size_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = free_.find(bytes);
    if (it == free_.end() || it->second.empty()) return nullptr;
    void* block = it->second.back();
    it->second.pop_back();
    cached_ -= bytes;
    return block;
  }

  void keep(void* block) {
    const size_t bytes = *static_cast<size_t*>(block);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (cached_ + bytes <= kMaxCachedBytes) {
        free_[bytes].push_back(block);
        cached_ += bytes;
        return;
      }
    }
    std::free(block);
  }

  std::mutex mutex_;
  std::unordered_map<size_t, std::vector<void*>> free_;
  size_t cached_ = 0;
};

// Never destroyed: tensors may be freed during or after static destruction.
OutputCache& cache() {
  static OutputCache* instance = new OutputCache();
  return *instance;
}

void OutputCache::give_back(void* block) { cache().keep(block); }

}  // namespace

at::Tensor empty_output(at::IntArrayRef sizes, at::MemoryFormat format, at::ScalarType dtype) {
  return at::detail::empty_generic(sizes, &cache(), c10::DispatchKeySet(c10::DispatchKey::CPU), dtype, format);
}

size_t cached_output_bytes() { return cache().cached(); }

size_t release_cached_outputs() { return cache().release(); }

}  // namespace fastresnet::cpu
