// rope.h: rotary position embedding exactly as spec §2 (the reference's
// modded-nanogpt style "half-truncated" RoPE), on q or k viewed as [B, T, H, D].
//
// D/2 frequencies: f_j = (1/1024)^(j / (D/4 - 1)) for j < D/4, then D/4 zeros.
// Each f_j is a float32 value: the exponent j / (D/4 - 1) is divided in float32
// (as PyTorch's arange(...) / (D/4 - 1)), the power is taken in double and
// rounded once to float32 (1/1024 is a power of two, so this is the correctly
// rounded float32 power).
// Token t has position p = t + pos_offset; angle a_j = float(p) * f_j in float32;
// with x1 = x[..., :D/2], x2 = x[..., D/2:]:
//   y1 =  x1 cos a + x2 sin a
//   y2 = -x1 sin a + x2 cos a
// sinf/cosf of the f32 angle on CPU and GPU alike (angles reach ~7000 rad; the
// fast intrinsics __sinf/__cosf are far off there). Backward is the inverse rotation.
#pragma once
#include <vector>

#include "core/tensor.h"

namespace iflame::ops {

// The D/2 frequencies above (D even, divisible by 4, >= 8).
std::vector<float> rope_frequencies(int64_t head_dim);

// x [B, T, H, D] (f32 or bf16, contiguous) -> y like x.
Tensor rope_forward(const Tensor& x, int64_t pos_offset);
// grad_y [B, T, H, D] -> grad_x (rotation by -a).
Tensor rope_backward(const Tensor& grad_y, int64_t pos_offset);

// One cached-decoding step (ops/decode_position.h): qkv [B, 3*H*D] (f32,
// contiguous) holds q, k and v side by side, as the fused projection writes
// them. Returns q [B, H, D] after RoPE at position p / div (each row at its
// own p when the counter has one per row), in k_dst's dtype; k (after RoPE)
// and v are written to k_dst and v_dst: either [B, H, D] tensors, or
// [B, capacity, H, D] caches whose row p / div is written; f32, or
// on the GPU also bf16 (rounded once from the f32 results). The rotation is
// rope_forward's, expression for expression.
Tensor qkv_rope_step(const Tensor& qkv, int64_t heads, const Tensor& position, int64_t div, Tensor& k_dst,
                     Tensor& v_dst);

namespace cpu {
Tensor rope_forward(const Tensor& x, int64_t pos_offset);
Tensor rope_backward(const Tensor& grad_y, int64_t pos_offset);
// Row b at the level position pos[b] (read from the counter by the caller).
Tensor qkv_rope_step(const Tensor& qkv, int64_t heads, const std::vector<int64_t>& pos, Tensor& k_dst,
                     Tensor& v_dst);
}  // namespace cpu

namespace cuda {
Tensor rope_forward(const Tensor& x, int64_t pos_offset);
Tensor rope_backward(const Tensor& grad_y, int64_t pos_offset);
Tensor qkv_rope_step(const Tensor& qkv, int64_t heads, const Tensor& position, int64_t div, Tensor& k_dst,
                     Tensor& v_dst);
}  // namespace cuda

}  // namespace iflame::ops
