// elementwise.h: the small element-wise ops of the model: residual adds, the
// hourglass's learned skip scaling (x = skip_weights2[i] * x + skip, spec §2),
// and scaling by a host constant.
//
// Activations may be f32 or bf16 and two inputs may differ in dtype; outputs take
// the dtype of the first activation argument. The skip weights are an f32
// parameter vector that stays on the device: kernels read weights[index]
// themselves, so nothing waits for the GPU.
#pragma once
#include "core/tensor.h"

namespace iflame::ops {

// a + b (same shape), in a's dtype.
Tensor add(const Tensor& a, const Tensor& b);
// a += b (same shape), a keeps its dtype.
void add_inplace(Tensor& a, const Tensor& b);
// y = weights[index] * x + skip; weights f32 [n]; y in x's dtype.
Tensor skip_scale_add_forward(const Tensor& x, const Tensor& weights, int index, const Tensor& skip);
// grad_x = weights[index] * grad_y (a new tensor in x's dtype);
// grad_weights[index] += sum(grad_y * x) (f32 [n], accumulated).
// The gradient of skip is grad_y itself: the caller uses it directly.
void skip_scale_add_backward(const Tensor& grad_y, const Tensor& x, const Tensor& weights, int index,
                             Tensor& grad_x, Tensor& grad_weights);
// s * x, in x's dtype.
Tensor scale(const Tensor& x, float s);

namespace cpu {
Tensor add(const Tensor& a, const Tensor& b);
void add_inplace(Tensor& a, const Tensor& b);
Tensor skip_scale_add_forward(const Tensor& x, const Tensor& weights, int index, const Tensor& skip);
void skip_scale_add_backward(const Tensor& grad_y, const Tensor& x, const Tensor& weights, int index,
                             Tensor& grad_x, Tensor& grad_weights);
Tensor scale(const Tensor& x, float s);
}  // namespace cpu

namespace cuda {
Tensor add(const Tensor& a, const Tensor& b);
void add_inplace(Tensor& a, const Tensor& b);
Tensor skip_scale_add_forward(const Tensor& x, const Tensor& weights, int index, const Tensor& skip);
// The sum of grad_y * x is taken in double, in a fixed order (repeatable).
void skip_scale_add_backward(const Tensor& grad_y, const Tensor& x, const Tensor& weights, int index,
                             Tensor& grad_x, Tensor& grad_weights);
Tensor scale(const Tensor& x, float s);
}  // namespace cuda

}  // namespace iflame::ops
