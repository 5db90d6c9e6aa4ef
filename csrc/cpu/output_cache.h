// Memory for the CPU kernels' outputs, reused once a tensor is freed.
//
// Every fused op returns a new tensor; through torch's CPU allocator each large one is a
// fresh mmap, and the kernel then pays a page fault per 4 KiB as it writes (measured:
// 1x1 64->256 conv at 56x56, batch 8: 114 GFLOP/s vs 164 with the memory reused). Here a
// freed output's block goes to a free list of its size, up to kMaxCachedBytes in all, and
// the next output of that size takes it: a model's activations repeat their sizes on
// every call. A block is only handed out again after its tensor is gone, so no tensor a
// caller holds is ever written to.
#pragma once

#include <ATen/core/Tensor.h>  // not ATen.h: an allocator needs none of the operators

#include <cstddef>

namespace fastresnet::cpu {

constexpr size_t kMaxCachedBytes = size_t(512) << 20;

// An uninitialised CPU tensor in `format`, its memory from the cache.
at::Tensor empty_output(at::IntArrayRef sizes, at::MemoryFormat format, at::ScalarType dtype);

// Bytes held in the cache now (blocks of freed outputs waiting for reuse).
size_t cached_output_bytes();

// Returns every cached block to the system; the bytes released.
size_t release_cached_outputs();

}  // namespace fastresnet::cpu
