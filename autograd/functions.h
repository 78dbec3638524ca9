// functions.h: the differentiable functions the model is written in.
// Each one runs the op's forward (ops/) and records its backward on the tape.
#pragma once
#include <vector>

#include "autograd/tape.h"

namespace iflame::ag {

// tokens: i32 [S...] (validated by the caller); output [S..., d] in out_dtype.
Variable embedding(const Variable& weight, const Tensor& tokens, DType out_dtype);
Variable rms_norm(const Variable& x, const Variable& weight, float eps);
// rms_norm then cast to out_dtype, as one op on the GPU (the kernel writes
// out_dtype and its backward reads the gradient in it); elsewhere the two ops.
Variable rms_norm(const Variable& x, const Variable& weight, float eps, DType out_dtype);
// y = x W^T + b; bias may be an undefined Variable. compute: F32 or BF16 matrix products.
Variable linear(const Variable& x, const Variable& weight, const Variable& bias, DType compute);
Variable swiglu(const Variable& a, const Variable& b);
// silu(x W1^T + b1) * (x W2^T + b2), [..., padded]: the FFN's two input
// projections as one product over packed weights (ops::linear_pair_forward),
// the gate read from its packed output, and in backward the biases' gradients
// summed by the gate's backward and both weights' gradients read from one
// packed gradient. Columns past H = w1.size(0) are exactly zero (they meet
// proj3's zero-padded columns).
Variable swiglu_pair(const Variable& x, const Variable& w1, const Variable& b1, const Variable& w2,
                     const Variable& b2, int64_t padded, DType compute);
Variable rope(const Variable& x, int64_t pos_offset);
Variable causal_attention(const Variable& q, const Variable& k, const Variable& v, float scale);
Variable linear_attention(const Variable& q, const Variable& k, const Variable& v,
                          const std::vector<float>& slopes);
Variable avg_pool3(const Variable& x);
Variable repeat3_shift2(const Variable& x, int64_t out_length);
Variable add(const Variable& a, const Variable& b);
// sum = add(a, b) and normed = rms_norm(sum, weight, eps, out_dtype), computed in
// one pass on the GPU; recorded as those two functions, so gradients are theirs.
struct AddNorm {
  Variable sum, normed;
};
AddNorm add_rms_norm(const Variable& a, const Variable& b, const Variable& weight, float eps, DType out_dtype);
// weights[index] * x + skip
Variable skip_scale_add(const Variable& x, const Variable& weights, int index, const Variable& skip);
Variable reshape(const Variable& x, const Shape& shape);
// x in another dtype (f32 <-> bf16); the gradient comes back in x's dtype. x itself when it already is.
Variable cast(const Variable& x, DType dtype);
// x (1-D or 2-D, f32) zero-padded at the end of each dimension to `shape`; the
// gradient is the matching corner of the padded one. x itself when no padding is asked.
Variable zero_pad(const Variable& x, const Shape& shape);

struct LossAndAccuracy {
  Variable loss;    // f32 [1], mean over counted rows
  Tensor accuracy;  // f32 [1]
  Tensor counted;   // f32 [1], rows not ignored
};
// logits [N, V], targets i32 [N]; rows whose target is ignore_index do not count.
LossAndAccuracy cross_entropy(const Variable& logits, const Tensor& targets, int ignore_index);

}  // namespace iflame::ag
