// embedding.h: token embedding lookup (forward) and its scatter-add (backward).
//
// forward:  out[s, :] = weight[tokens[s], :]      weight f32 [V, d], tokens i32 (any shape S)
// backward: grad_weight[tokens[s], :] += grad_out[s, :]
//
// The public CPU path checks every token against [0, V) and names the first bad
// one and its position. The CUDA path does NOT check (that would need a host
// sync): callers validate tokens on the host (data loading does). As a guard
// against memory corruption the kernels still never index out of range: the
// forward writes NaN for an out-of-range token's row (so the mistake shows),
// the backward skips it.
#pragma once
#include "core/tensor.h"

namespace iflame::ops {

// -> [S..., d] in out_dtype (f32 or bf16; the CPU reference gives f32 only).
Tensor embedding_forward(const Tensor& weight, const Tensor& tokens, DType out_dtype);
// grad_out [S..., d] (activation dtype); grad_weight f32 [V, d], accumulated (+=).
void embedding_backward(const Tensor& grad_out, const Tensor& tokens, Tensor& grad_weight);

namespace cpu {
Tensor embedding_forward(const Tensor& weight, const Tensor& tokens, DType out_dtype);
void embedding_backward(const Tensor& grad_out, const Tensor& tokens, Tensor& grad_weight);
}  // namespace cpu

namespace cuda {
Tensor embedding_forward(const Tensor& weight, const Tensor& tokens, DType out_dtype);
// Accumulates with float atomics: the result is not bit-for-bit repeatable run to run.
void embedding_backward(const Tensor& grad_out, const Tensor& tokens, Tensor& grad_weight);
}  // namespace cuda

}  // namespace iflame::ops
