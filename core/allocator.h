// allocator.h: memory for tensors. Host memory is 64-byte aligned malloc; device
// memory comes from a caching allocator, so that steady-state training and
// sampling make no cudaMalloc/cudaFree calls: freed blocks go to a free list
// keyed by their (rounded) size and are handed out again. Blocks are only used
// on the one project stream, so a block freed by the host can be reused at once
// by later work on that stream.
#pragma once
#include <cstddef>

#include "core/dtype.h"

namespace iflame {

void* alloc_bytes(size_t bytes, Device device);
void free_bytes(void* ptr, size_t bytes, Device device);

struct DeviceMemoryStats {
  size_t in_use = 0;      // bytes handed out to live tensors
  size_t cached = 0;      // bytes held in free lists
  size_t peak_in_use = 0;
  size_t cuda_mallocs = 0;  // how many times we called cudaMalloc
};
DeviceMemoryStats device_memory_stats();
void reset_peak_device_memory();

// Host tensor memory, counted the same way (bytes as asked, before the 64-byte
// rounding; no cache, so `cached` and `cuda_mallocs` stay 0). Counted over all
// threads. Tests use it to weigh what the autograd tape holds after a forward
// (training/memory_model.h); ./train --bench reports its peak on the CPU.
DeviceMemoryStats host_memory_stats();
void reset_peak_host_memory();
// Gives every cached block back to the driver.
void release_cached_device_memory();

}  // namespace iflame
