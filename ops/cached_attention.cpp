// cached_attention.cpp: argument checks and dispatch of the cached attention
// step (see cached_attention.h).
#include "ops/cached_attention.h"

#include "core/profiler.h"
#include "ops/decode_position.h"
#include "ops/dispatch.h"

namespace iflame::ops {

namespace {

void check_cached_attention(const char* op, const Tensor& q, const Tensor& k_cache, const Tensor& v_cache) {
  IFLAME_CHECK(q.defined() && q.ndim() == 3 && q.is_contiguous(), op, ": q must be contiguous [B, H, D], got ",
               q.describe());
  for (const Tensor* c : {&k_cache, &v_cache}) {
    IFLAME_CHECK(c->defined() && c->ndim() == 4 && c->is_contiguous(), op,
                 ": caches must be contiguous [B, capacity, H, D], got ", c->describe());
    IFLAME_CHECK(c->size(0) == q.size(0) && c->size(2) == q.size(1) && c->size(3) == q.size(2), op,
                 ": cache ", c->describe(), " does not fit q ", q.describe());
    IFLAME_CHECK(c->dtype() == q.dtype() && c->device() == q.device(), op,
                 ": caches must have q's dtype and device; q ", q.describe(), ", cache ", c->describe());
  }
  IFLAME_CHECK(k_cache.shape() == v_cache.shape(), op, ": k and v caches differ: ", k_cache.describe(), " vs ",
               v_cache.describe());
}

// The step's FLOPs and bytes for the profiler (core/profiler.h), over `length` cache rows.
double cached_attention_flops(const Tensor& q, int64_t length) {
  return 2 * 2 * double(q.numel()) * length;  // q . k and p v over `length` rows, per (b, h): 4*B*H*D*length
}
double cached_attention_bytes(const Tensor& q, const Tensor& k_cache, int64_t length) {
  // Reads q and `length` rows of each cache, writes o.
  return 2 * double(q.nbytes()) + 2 * double(k_cache.size(0)) * length * k_cache.size(2) * k_cache.size(3) *
                                      dtype_size(k_cache.dtype());
}

}  // namespace

Tensor cached_attention_step(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                             int64_t length, float scale) {
  const char* op = "cached_attention_step";
  check_cached_attention(op, q, k_cache, v_cache);
  IFLAME_CHECK(length >= 1 && length <= k_cache.size(1), op, ": length ", length, " outside [1, capacity ",
               k_cache.size(1), "]");
  PROFILE_OP("cached_attention_step", cached_attention_flops(q, length), cached_attention_bytes(q, k_cache, length),
             q.device(), q.dtype());
  if (q.is_cuda()) {
    CUDA_ONLY(return cuda::cached_attention_step(q, k_cache, v_cache, length, scale));
  }
  return cpu::cached_attention_step(q, k_cache, v_cache, std::vector<int64_t>(q.size(0), length), scale);
}

Tensor cached_attention_at(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                           const Tensor& position, int64_t div, float scale, int64_t host_length,
                           const Tensor& live) {
  const char* op = "cached_attention_at";
  check_cached_attention(op, q, k_cache, v_cache);
  check_decode_position(op, position, div, q.device(), q.size(0));
  const int64_t B = q.size(0);
  if (live.defined()) {
    IFLAME_CHECK(live.dtype() == DType::I32, op, ": live must be i32, got ", live.describe());
    IFLAME_CHECK(live.ndim() == 1 && live.size(0) == B && live.is_contiguous(), op,
                 ": live must be a contiguous [", B, "] tensor (one flag per row of q), got ", live.describe());
    IFLAME_CHECK(live.device() == q.device(), op, ": live must be on q's device (", device_name(q.device()),
                 "), got ", live.describe());
  }
  PROFILE_OP("cached_attention_at", host_length > 0 ? cached_attention_flops(q, host_length) : 0,
             host_length > 0 ? cached_attention_bytes(q, k_cache, host_length) : 0, q.device(), q.dtype());
  if (q.is_cuda()) {
    // The length and the flags are read on the device; the kernel bounds the length by the capacity.
    CUDA_ONLY(return cuda::cached_attention_at(q, k_cache, v_cache, position, div, scale,
                                               live.defined() ? live.data<int32_t>() : nullptr));
  }
  std::vector<int64_t> lengths = level_positions(op, position, div, B);
  const std::vector<int32_t> flags = live.defined() ? live.to_ints() : std::vector<int32_t>(B, 1);
  for (int64_t b = 0; b < B; b++) {
    IFLAME_CHECK(lengths[b] < k_cache.size(1), op, ": position ", lengths[b], " is past the cache capacity ",
                 k_cache.size(1));
    lengths[b] = flags[b] ? lengths[b] + 1 : 0;  // a dead row reads nothing (length 0: zeros)
  }
  return cpu::cached_attention_step(q, k_cache, v_cache, lengths, scale);
}

}  // namespace iflame::ops
