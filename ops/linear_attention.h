// linear_attention.h: the decayed linear attention of spec §2 (Lightning style:
// no softmax, no scale, no feature map), forward, backward and one decoding step.
//
// Per batch b and head h with slope s_h, for q, k, v [B, T, H, D] (contiguous):
//   o_t = sum_{j <= t} exp(-s_h (t - j)) (q_t . k_j) v_j
// Recurrent form (decoding): S = exp(-s_h) S + k_t^T v_t (S is D x D, row index
// from k, column index from v), o_t = q_t S.
//
// CPU: f32 only, any D. CUDA: D == 32, f32 or bf16 q/k/v. bf16 runs the tensor-core
// kernel (ops/cuda/linear_attention_bf16.cu: chunks of 64, bf16 products with f32
// accumulation, the state and the decays in f32; the decayed scores, the decayed keys of
// the state update and the copy of the state used in products rounded to bf16;
// the kernel choice linear_attention_mma of ops/kernel_choices.h turns it off); f32 runs f32
// arithmetic throughout (ops/cuda/linear_attention.cu), as does the decoding step.
#pragma once
#include <vector>

#include "core/tensor.h"

namespace iflame::ops {

// The model's slopes for n heads, as the reference's ALiBi slope function computes
// them (in double, then rounded to float): for n a power of two s_h = r^(h+1) with
// r = 2^(-8/n); otherwise the reference's rule (the slopes of the nearest lower power
// of two, then every other slope of twice that).
std::vector<float> linear_attention_slopes(int num_heads);

// o [B, T, H, D] in q's dtype. slopes.size() must be H.
Tensor linear_attention_forward(const Tensor& q, const Tensor& k, const Tensor& v,
                                const std::vector<float>& slopes);

// Gradients of sum(grad_o * o) with respect to q, k, v (allocated here, inputs' dtype).
void linear_attention_backward(const Tensor& grad_o, const Tensor& q, const Tensor& k,
                               const Tensor& v, const std::vector<float>& slopes, Tensor& grad_q,
                               Tensor& grad_k, Tensor& grad_v);

// One decoding step for one new token per sequence: q, k, v [B, H, D]; state f32
// [B, H, D, D] on the same device, updated in place: S = exp(-s_h) S + k^T v.
// Returns o = q S (after the update), [B, H, D] in q's dtype. Start from a zero state.
Tensor linear_attention_step(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& state,
                             const std::vector<float>& slopes);

namespace cpu {
// The definition: the direct O(T^2) sum, as the formula reads.
Tensor linear_attention_forward(const Tensor& q, const Tensor& k, const Tensor& v,
                                const std::vector<float>& slopes);
void linear_attention_backward(const Tensor& grad_o, const Tensor& q, const Tensor& k,
                               const Tensor& v, const std::vector<float>& slopes, Tensor& grad_q,
                               Tensor& grad_k, Tensor& grad_v);
Tensor linear_attention_step(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& state,
                             const std::vector<float>& slopes);

// Second opinions, tested against the definition above:
// the recurrence (forward state S, reverse state R; see the .cpp) ...
Tensor linear_attention_forward_recurrent(const Tensor& q, const Tensor& k, const Tensor& v,
                                          const std::vector<float>& slopes);
void linear_attention_backward_recurrent(const Tensor& grad_o, const Tensor& q, const Tensor& k,
                                         const Tensor& v, const std::vector<float>& slopes,
                                         Tensor& grad_q, Tensor& grad_k, Tensor& grad_v);
// ... and the chunked algorithm of the CUDA kernel, step for step (chunk length
// `chunk`), so its index arithmetic can be tested on a machine without a GPU.
Tensor linear_attention_forward_chunked(const Tensor& q, const Tensor& k, const Tensor& v,
                                        const std::vector<float>& slopes, int chunk);
void linear_attention_backward_chunked(const Tensor& grad_o, const Tensor& q, const Tensor& k,
                                       const Tensor& v, const std::vector<float>& slopes,
                                       int chunk, Tensor& grad_q, Tensor& grad_k, Tensor& grad_v);
}  // namespace cpu

namespace cuda {
Tensor linear_attention_forward(const Tensor& q, const Tensor& k, const Tensor& v,
                                const std::vector<float>& slopes);
void linear_attention_backward(const Tensor& grad_o, const Tensor& q, const Tensor& k,
                               const Tensor& v, const std::vector<float>& slopes, Tensor& grad_q,
                               Tensor& grad_k, Tensor& grad_v);
Tensor linear_attention_step(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& state,
                             const std::vector<float>& slopes);
}  // namespace cuda

}  // namespace iflame::ops
