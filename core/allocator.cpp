// allocator.cpp: host allocation and the caching device allocator.
#include "core/allocator.h"

#include <atomic>
#include <cstdlib>
#include <map>
#include <mutex>
#include <unordered_map>
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

using FreeLists = std::map<size_t, std::vector<void*>>;  // rounded size -> blocks

struct DeviceCache {
  std::mutex mu;
  FreeLists free_blocks;  // the shared cache
  DeviceMemoryStats stats;
  // Private pools (allocator.h): their free lists, and which pool owns each of
  // their blocks (handed out or free).
  int next_pool = 1;
  std::map<int, FreeLists> pools;
  std::unordered_map<void*, int> pool_of;
};
DeviceCache& cache() {
  static DeviceCache* c = new DeviceCache();  // never destroyed: tensors may outlive statics
  return *c;
}

// The pool this thread allocates from: 0 is the shared cache.
thread_local int current_pool = 0;

#ifdef IFLAME_CUDA
// cudaMalloc while this thread captures a CUDA graph (a private pool growing):
// the capture modes other than "relaxed" refuse it as potentially unsafe, since
// an allocation is not part of the graph. Here it is safe: the block stays in
// the pool for as long as the graph can be replayed. So the thread's capture
// mode is relaxed for this one call.
cudaError_t malloc_even_while_capturing(void** p, size_t size) {
  cudaStreamCaptureMode mode = cudaStreamCaptureModeRelaxed;
  cudaThreadExchangeStreamCaptureMode(&mode);
  const cudaError_t err = cudaMalloc(p, size);
  cudaThreadExchangeStreamCaptureMode(&mode);
  return err;
}
#endif
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
  const int pool = current_pool;
  FreeLists& lists = pool == 0 ? c.free_blocks : c.pools.at(pool);
  auto it = lists.find(size);
  void* p = nullptr;
  if (it != lists.end() && !it->second.empty()) {
    p = it->second.back();
    it->second.pop_back();
    c.stats.cached -= size;
  } else {
    cudaError_t err = malloc_even_while_capturing(&p, size);
    cudaStreamCaptureStatus capturing = cudaStreamCaptureStatusNone;
    if (err != cudaSuccess) cudaStreamIsCapturing(cuda_stream(), &capturing);
    if (err != cudaSuccess && capturing == cudaStreamCaptureStatusActive) {
      // No freeing of the cache during a capture (cudaFree would end it): fail plainly.
      cudaGetLastError();
      IFLAME_FAIL("CUDA out of memory while capturing a CUDA graph: could not allocate ", size / double(1 << 20),
                  " MiB (", c.stats.in_use / double(1 << 30), " GiB already in use by tensors)");
    }
    if (err != cudaSuccess) {
      cudaGetLastError();
      // Give the shared cache back to the driver and try once more before
      // failing (private pools keep their blocks: graphs may still use them).
      for (auto& kv : c.free_blocks)
        for (void* q : kv.second) {
          cudaFree(q);
          c.stats.cached -= kv.first;
        }
      c.free_blocks.clear();
      err = malloc_even_while_capturing(&p, size);
      if (err != cudaSuccess) {
        cudaGetLastError();
        IFLAME_FAIL("CUDA out of memory: could not allocate ", size / double(1 << 20),
                    " MiB (", c.stats.in_use / double(1 << 30), " GiB already in use by tensors)");
      }
    }
    c.stats.cuda_mallocs++;
    if (pool != 0) c.pool_of[p] = pool;
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
  auto owner = c.pool_of.find(ptr);
  FreeLists& lists = owner == c.pool_of.end() ? c.free_blocks : c.pools.at(owner->second);
  lists[size].push_back(ptr);
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
    for (void* q : kv.second) {
      CUDA_CHECK(cudaFree(q));
      c.stats.cached -= kv.first;
    }
  c.free_blocks.clear();
#endif
}

int create_device_pool() {
  DeviceCache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  const int pool = c.next_pool++;
  c.pools[pool];
  return pool;
}

void release_device_pool(int pool) {
  DeviceCache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  auto it = c.pools.find(pool);
  IFLAME_CHECK(it != c.pools.end(), "release_device_pool: no pool ", pool);
  size_t held = 0;
  for (const auto& kv : c.pool_of)
    if (kv.second == pool) held++;
  size_t free_count = 0;
  for (const auto& kv : it->second) free_count += kv.second.size();
  IFLAME_CHECK(held == free_count, "release_device_pool: ", held - free_count,
               " blocks of pool ", pool, " are still held by tensors");
#ifdef IFLAME_CUDA
  if (free_count > 0) CUDA_CHECK(cudaStreamSynchronize(cuda_stream()));  // graphs may still run
  for (auto& kv : it->second)
    for (void* q : kv.second) {
      CUDA_CHECK(cudaFree(q));
      c.stats.cached -= kv.first;
      c.pool_of.erase(q);
    }
#endif
  c.pools.erase(it);
}

DevicePoolScope::DevicePoolScope(int pool) : previous_(current_pool) {
  {
    DeviceCache& c = cache();
    std::lock_guard<std::mutex> lock(c.mu);
    IFLAME_CHECK(pool == 0 || c.pools.count(pool), "DevicePoolScope: no pool ", pool);
  }
  current_pool = pool;
}

DevicePoolScope::~DevicePoolScope() { current_pool = previous_; }

}  // namespace iflame
