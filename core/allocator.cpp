// allocator.cpp: host allocation and the caching device allocator.
#include "core/allocator.h"

#include <atomic>
#include <cstdlib>
#include <map>
#include <mutex>
#include <vector>

#include "core/error.h"
#ifdef IFLAME_CUDA
#include "core/cuda_check.h"
#endif

namespace iflame {

namespace {
#ifdef IFLAME_CUDA
// Device sizes are rounded so that blocks of nearby sizes can be reused:
// small ones to 512 bytes, large ones to 2 MiB.
size_t round_device_size(size_t bytes) {
  const size_t small = 512, large = 2u << 20;
  if (bytes < (1u << 20)) return (bytes + small - 1) / small * small;
  return (bytes + large - 1) / large * large;
}
#endif

struct DeviceCache {
  std::mutex mu;
  std::map<size_t, std::vector<void*>> free_blocks;  // rounded size -> blocks
  DeviceMemoryStats stats;
};
DeviceCache& cache() {
  static DeviceCache* c = new DeviceCache();  // never destroyed: tensors may outlive statics
  return *c;
}

// Host counters: atomics, since loader threads allocate too.
std::atomic<size_t> host_in_use{0}, host_peak{0};
void count_host_alloc(size_t bytes) {
  size_t now = host_in_use.fetch_add(bytes, std::memory_order_relaxed) + bytes;
  size_t peak = host_peak.load(std::memory_order_relaxed);
  while (now > peak && !host_peak.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
  }
}
}  // namespace

void* alloc_bytes(size_t bytes, Device device) {
  if (bytes == 0) bytes = 1;
  if (device == Device::CPU) {
    size_t rounded = (bytes + 63) / 64 * 64;
    void* p = std::aligned_alloc(64, rounded);
    IFLAME_CHECK(p != nullptr, "out of host memory allocating ", bytes, " bytes");
    count_host_alloc(bytes);
    return p;
  }
#ifdef IFLAME_CUDA
  size_t size = round_device_size(bytes);
  DeviceCache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  auto it = c.free_blocks.find(size);
  void* p = nullptr;
  if (it != c.free_blocks.end() && !it->second.empty()) {
    p = it->second.back();
    it->second.pop_back();
    c.stats.cached -= size;
  } else {
    cudaError_t err = cudaMalloc(&p, size);
    if (err != cudaSuccess) {
      cudaGetLastError();
      // Give the cache back to the driver and try once more before failing.
      for (auto& kv : c.free_blocks)
        for (void* q : kv.second) cudaFree(q);
      c.free_blocks.clear();
      c.stats.cached = 0;
      err = cudaMalloc(&p, size);
      if (err != cudaSuccess) {
        cudaGetLastError();
        IFLAME_FAIL("CUDA out of memory: could not allocate ", size / double(1 << 20),
                    " MiB (", c.stats.in_use / double(1 << 30), " GiB already in use by tensors)");
      }
    }
    c.stats.cuda_mallocs++;
  }
  c.stats.in_use += size;
  if (c.stats.in_use > c.stats.peak_in_use) c.stats.peak_in_use = c.stats.in_use;
  return p;
#else
  IFLAME_FAIL("cannot allocate GPU memory: built without CUDA");
#endif
}

void free_bytes(void* ptr, size_t bytes, Device device) {
  if (!ptr) return;
  if (device == Device::CPU) {
    std::free(ptr);
    host_in_use.fetch_sub(bytes == 0 ? 1 : bytes, std::memory_order_relaxed);
    return;
  }
#ifdef IFLAME_CUDA
  if (bytes == 0) bytes = 1;
  size_t size = round_device_size(bytes);
  DeviceCache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  c.free_blocks[size].push_back(ptr);
  c.stats.cached += size;
  c.stats.in_use -= size;
#else
  (void)bytes;
#endif
}

DeviceMemoryStats device_memory_stats() {
  DeviceCache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  return c.stats;
}

void reset_peak_device_memory() {
  DeviceCache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  c.stats.peak_in_use = c.stats.in_use;
}

DeviceMemoryStats host_memory_stats() {
  DeviceMemoryStats s;
  s.in_use = host_in_use.load(std::memory_order_relaxed);
  s.peak_in_use = host_peak.load(std::memory_order_relaxed);
  return s;
}

void reset_peak_host_memory() { host_peak.store(host_in_use.load(std::memory_order_relaxed), std::memory_order_relaxed); }

void release_cached_device_memory() {
#ifdef IFLAME_CUDA
  DeviceCache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  CUDA_CHECK(cudaStreamSynchronize(cuda_stream()));
  for (auto& kv : c.free_blocks)
    for (void* q : kv.second) CUDA_CHECK(cudaFree(q));
  c.free_blocks.clear();
  c.stats.cached = 0;
#endif
}

}  // namespace iflame
