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

namespace cpu {
Tensor swiglu_forward(const Tensor& a, const Tensor& b);
void swiglu_backward(const Tensor& grad_y, const Tensor& a, const Tensor& b, Tensor& grad_a, Tensor& grad_b);
}  // namespace cpu

namespace cuda {
Tensor swiglu_forward(const Tensor& a, const Tensor& b);
void swiglu_backward(const Tensor& grad_y, const Tensor& a, const Tensor& b, Tensor& grad_a, Tensor& grad_b);
}  // namespace cuda

}  // namespace iflame::ops
