// causal_attention.h: causal softmax attention (the "full attention" of spec §2),
// forward and backward, for training (Tq == Tk) and for cached decoding (Tq < Tk:
// the queries are the last Tq positions of a key/value cache of length Tk).
//
// Layout: q [B, Tq, H, D], k and v [B, Tk, H, D], all contiguous (a projection
// output [B, T, H*D] viewed, no transposes). Query i (0-based among the Tq) sees
// keys j <= i + (Tk - Tq). Scores are scale * (q_i . k_j); the model uses
// scale = 1/sqrt(D). lse [B, H, Tq] (f32) is the natural log-sum-exp of each
// query's scaled scores over the keys it sees: what the backward needs to rebuild
// the probabilities without storing them.
//
// CPU: f32 only, any D. CUDA: D == 32, f32 or bf16 q/k/v/o. bf16 runs the
// tensor-core kernels (ops/cuda/flash_attention_bf16.cu: bf16 products with f32
// accumulation, the probabilities P and dS rounded to bf16 for their products, as
// FlashAttention-2 does; the kernel choice flash_attention of ops/kernel_choices.h turns them off);
// f32 runs f32 arithmetic throughout (ops/cuda/causal_attention.cu).
#pragma once
#include "core/tensor.h"

namespace iflame::ops {

// Returns o [B, Tq, H, D] in q's dtype. If lse is not null it receives a new
// f32 [B, H, Tq] tensor on q's device.
Tensor causal_attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, float scale,
                                Tensor* lse);

// Gradients of sum(grad_o * o) with respect to q, k, v, given the forward's o and
// lse. Any Tq <= Tk is accepted (training uses Tq == Tk); with Tq < Tk only the
// queries given contribute to grad_k and grad_v. Outputs are allocated here,
// with the inputs' dtype and device.
void causal_attention_backward(const Tensor& grad_o, const Tensor& q, const Tensor& k,
                               const Tensor& v, const Tensor& o, const Tensor& lse, float scale,
                               Tensor& grad_q, Tensor& grad_k, Tensor& grad_v);

namespace cpu {
Tensor causal_attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, float scale,
                                Tensor* lse);
void causal_attention_backward(const Tensor& grad_o, const Tensor& q, const Tensor& k,
                               const Tensor& v, const Tensor& o, const Tensor& lse, float scale,
                               Tensor& grad_q, Tensor& grad_k, Tensor& grad_v);
}  // namespace cpu

namespace cuda {
Tensor causal_attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, float scale,
                                Tensor* lse);
void causal_attention_backward(const Tensor& grad_o, const Tensor& q, const Tensor& k,
                               const Tensor& v, const Tensor& o, const Tensor& lse, float scale,
                               Tensor& grad_q, Tensor& grad_k, Tensor& grad_v);
}  // namespace cuda

}  // namespace iflame::ops
