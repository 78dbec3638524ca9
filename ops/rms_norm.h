// rms_norm.h: RMSNorm over the last dimension (spec §2: every norm1/norm2, the
// embedding "norm", and the linear-attention output norm; eps 1e-5).
//
//   inv_rms[r] = 1 / sqrt(mean_j x[r, j]^2 + eps)          (f32, saved for backward)
//   y[r, j]    = x[r, j] * inv_rms[r] * weight[j]
// Statistics and arithmetic in f32 whatever the storage type; y is rounded to the
// activation dtype once, at the end.
//
// Backward, with n = x * inv_rms and gn = grad_y * weight:
//   grad_weight[j] += sum_r grad_y[r, j] * n[r, j]
//   grad_x[r, j]    = inv_rms[r] * (gn[r, j] - n[r, j] * mean_j(gn[r, :] * n[r, :]))
#pragma once
#include "core/tensor.h"

namespace iflame::ops {

// x [..., d] (activation dtype), weight f32 [d]; inv_rms is set to a new f32 tensor
// of shape [rows] (rows = numel / d). Returns y, shaped and typed like x.
Tensor rms_norm_forward(const Tensor& x, const Tensor& weight, float eps, Tensor& inv_rms);
// The same with y in `out_dtype` (f32 or bf16; the CPU reference: f32 only).
// y is rounded once, so on the GPU this equals rms_norm_forward(x, ...).to(out_dtype)
// bit for bit, without writing and re-reading an f32 y: the f32 residual stream's
// norms hand bf16 to the blocks this way (spec's norm1 / norm2).
Tensor rms_norm_forward(const Tensor& x, const Tensor& weight, float eps, Tensor& inv_rms, DType out_dtype);
// The residual add and the norm after it in one pass (a block's h = x + attn(...)
// followed by norm2(h)): sum = a + b in a's dtype (b f32 or bf16, f32
// arithmetic, as add()), and the returned y = rms_norm_forward(sum, ...) in
// out_dtype, equal bit for bit to the two ops one after the other, without
// reading sum back. a and b share a shape; d = a.size(-1).
Tensor add_rms_norm_forward(const Tensor& a, const Tensor& b, const Tensor& weight, float eps, Tensor& sum,
                            Tensor& inv_rms, DType out_dtype);
// Returns grad_x (like x); grad_weight f32 [d] is accumulated (+=). On the GPU
// grad_y may be f32 or bf16 whatever x is (it is read as float either way).
// With `accumulate` (a contiguous tensor of x's shape and dtype: the gradient x
// already has), grad_x is added into it in place and it is returned: the sum
// add(accumulate, grad_x) would give, without writing grad_x and reading it back.
Tensor rms_norm_backward(const Tensor& grad_y, const Tensor& x, const Tensor& weight, const Tensor& inv_rms,
                         Tensor& grad_weight, Tensor* accumulate = nullptr);

namespace cpu {
Tensor rms_norm_forward(const Tensor& x, const Tensor& weight, float eps, Tensor& inv_rms);
Tensor rms_norm_backward(const Tensor& grad_y, const Tensor& x, const Tensor& weight, const Tensor& inv_rms,
                         Tensor& grad_weight, Tensor* accumulate);
}  // namespace cpu

namespace cuda {
Tensor rms_norm_forward(const Tensor& x, const Tensor& weight, float eps, Tensor& inv_rms, DType out_dtype);
// d <= 1024 (the caller goes through add + rms_norm_forward beyond).
Tensor add_rms_norm_forward(const Tensor& a, const Tensor& b, const Tensor& weight, float eps, Tensor& sum,
                            Tensor& inv_rms, DType out_dtype);
// grad_weight is summed with float atomics (one per column per block): not bit-for-bit repeatable.
Tensor rms_norm_backward(const Tensor& grad_y, const Tensor& x, const Tensor& weight, const Tensor& inv_rms,
                         Tensor& grad_weight, Tensor* accumulate);
}  // namespace cuda

}  // namespace iflame::ops
