// swiglu.h: the SwiGLU gate of the FFN (spec §2): y = silu(a) * b, element-wise,
// with a = proj1 x and b = proj2 x.
//
//   silu(a) = a * sigmoid(a)
//   grad_a  = grad_y * b * sigmoid(a) * (1 + a * (1 - sigmoid(a)))
//   grad_b  = grad_y * silu(a)
#pragma once
#include "core/tensor.h"

namespace iflame::ops {

// a and b: same shape and dtype (f32 or bf16). Returns y like a.
Tensor swiglu_forward(const Tensor& a, const Tensor& b);
// grad_a and grad_b are set to new tensors like a and b.
void swiglu_backward(const Tensor& grad_y, const Tensor& a, const Tensor& b, Tensor& grad_a, Tensor& grad_b);

// The packed form, for proj1 and proj2 done as one product: ab [..., 2P] holds
// a in its first P columns and b in its last P. Returns y = silu(a) * b [..., P]
// in ab's dtype.
Tensor swiglu_packed_forward(const Tensor& ab);
// Returns grad_ab = [grad_a | grad_b], like ab. With bias_grad (f32 [2P]), the
// column sums of grad_ab, as stored, are added into it (+=): the gradient of the
// packed product's bias, without reading grad_ab back (sums in f32 per block of
// rows, then over the blocks in a fixed order: repeatable).
Tensor swiglu_packed_backward(const Tensor& grad_y, const Tensor& ab, Tensor* bias_grad);

namespace cpu {
Tensor swiglu_forward(const Tensor& a, const Tensor& b);
void swiglu_backward(const Tensor& grad_y, const Tensor& a, const Tensor& b, Tensor& grad_a, Tensor& grad_b);
Tensor swiglu_packed_forward(const Tensor& ab);
Tensor swiglu_packed_backward(const Tensor& grad_y, const Tensor& ab, Tensor* bias_grad);
}  // namespace cpu

namespace cuda {
Tensor swiglu_forward(const Tensor& a, const Tensor& b);
void swiglu_backward(const Tensor& grad_y, const Tensor& a, const Tensor& b, Tensor& grad_a, Tensor& grad_b);
Tensor swiglu_packed_forward(const Tensor& ab);
Tensor swiglu_packed_backward(const Tensor& grad_y, const Tensor& ab, Tensor* bias_grad);
}  // namespace cuda

}  // namespace iflame::ops
