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
// Gives every cached block of the shared cache back to the driver (private
// pools keep theirs: see below).
void release_cached_device_memory();

// Private pools, for CUDA graphs. A captured graph bakes in the addresses of
// every tensor its kernels touch, including the intermediates that were freed
// during the capture; replaying it later writes to those addresses again. So
// while a graph may still be replayed, those blocks must never be handed to
// anyone else. While a DevicePoolScope is alive, device allocations made by
// this thread come from a private pool, and blocks of a private pool go back
// to that pool when freed (whoever frees them), never to the shared cache.
// Graphs that are replayed one after another on the one stream may share a
// pool: each graph's intermediates are dead when it ends. release_device_pool
// gives the pool's blocks back to the driver once no graph that used it can be
// replayed and no tensor of it is alive.
int create_device_pool();
void release_device_pool(int pool);
class DevicePoolScope {
 public:
  explicit DevicePoolScope(int pool);
  ~DevicePoolScope();
  DevicePoolScope(const DevicePoolScope&) = delete;
  DevicePoolScope& operator=(const DevicePoolScope&) = delete;

 private:
  int previous_;
};

}  // namespace iflame
