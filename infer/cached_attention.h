// cached_attention.h: one decoding step of causal softmax attention against a
// key/value cache that has room for more positions than are filled.
//
//   q [B, H, D]; k_cache, v_cache [B, capacity, H, D] (contiguous, K stored after
//   RoPE); the query sees cache rows 0 .. length-1 (its own row included):
//   o[b, h] = sum_j softmax_j(scale q[b, h] . k[b, j, h]) v[b, j, h].
//
// This is ops::causal_attention_forward with Tq = 1 and Tk = length, except that
// the cache is read in place: a [B, length, H, D] slice of a [B, capacity, H, D]
// buffer is not contiguous for B > 1, and copying it out every step would cost
// O(length) per token. The CPU reference is tested against causal_attention_forward.
// CPU: f32, any D. CUDA: f32 or bf16 (q and the caches of one dtype), D == 32.
#pragma once
#include "core/tensor.h"

namespace iflame::infer {

Tensor cached_attention_step(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                             int64_t length, float scale);

// The argument checks above (shapes, dtypes, devices), for forms that take the
// length from elsewhere (infer/decode_ops.h).
void check_cached_attention(const char* op, const Tensor& q, const Tensor& k_cache, const Tensor& v_cache);

// The step's FLOPs and bytes for the profiler (core/profiler.h), over `length` cache rows.
double cached_attention_flops(const Tensor& q, int64_t length);
double cached_attention_bytes(const Tensor& q, const Tensor& k_cache, int64_t length);

namespace cpu {
Tensor cached_attention_step(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                             int64_t length, float scale);
}
namespace cuda {
Tensor cached_attention_step(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                             int64_t length, float scale);
}

}  // namespace iflame::infer
