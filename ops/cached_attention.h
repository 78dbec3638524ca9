// cached_attention.h: one decoding step of causal softmax attention against a
// key/value cache that has room for more positions than are filled.
//
//   q [B, H, D]; k_cache, v_cache [B, capacity, H, D] (contiguous, K stored after
//   RoPE); the query sees cache rows 0 .. length-1 (its own row included):
//   o[b, h] = sum_j softmax_j(scale q[b, h] . k[b, j, h]) v[b, j, h].
//
// This is causal_attention_forward (ops/causal_attention.h) with Tq = 1 and Tk = length, except that
// the cache is read in place: a [B, length, H, D] slice of a [B, capacity, H, D]
// buffer is not contiguous for B > 1, and copying it out every step would cost
// O(length) per token. The CPU reference is tested against causal_attention_forward.
// CPU: f32, any D. CUDA: f32 or bf16 (q and the caches of one dtype), D == 32.
#pragma once
#include <vector>

#include "core/tensor.h"

namespace iflame::ops {

Tensor cached_attention_step(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                             int64_t length, float scale);

// The same with the length read on the device: cache rows 0 .. p / div, for
// the decoding position counter `position` (ops/decode_position.h; row b
// reads its own p when the counter has one per row), so that a captured step
// replays at every position. host_length: the caller's host
// copy of p / div + 1, used only to count the step's FLOPs and bytes for the
// profiler (the kernel reads the device counter); -1 when unknown, which
// counts them as 0 (it counts every row, live or not).
//
// live: undefined (every row is live), or i32 [B] on q's device, read on the
// device like the position: a row with live[b] == 0 (a decoding row whose
// sample is done or idle, infer/decode.h's DecodeState::row_live) reads no key
// or value and its output is zeros; the other rows are computed exactly as
// without the flags (the same bits).
Tensor cached_attention_at(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                           const Tensor& position, int64_t div, float scale, int64_t host_length = -1,
                           const Tensor& live = Tensor());

namespace cpu {
// Row b over its cache rows 0 .. lengths[b]-1; a row of length 0 reads nothing
// and gives zeros (a dead row of cached_attention_at).
Tensor cached_attention_step(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                             const std::vector<int64_t>& lengths, float scale);
}
namespace cuda {
Tensor cached_attention_step(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                             int64_t length, float scale);
// live: null (every row live) or the device's i32 [B] flags.
Tensor cached_attention_at(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                           const Tensor& position, int64_t div, float scale, const int32_t* live);
}  // namespace cuda

}  // namespace iflame::ops
