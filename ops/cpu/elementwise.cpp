// cpu/elementwise.cpp: the reference element-wise ops, plain loops in f32.
#include "ops/elementwise.h"

namespace iflame::ops::cpu {

Tensor add(const Tensor& a, const Tensor& b) {
  Tensor y = Tensor::empty(a.shape(), DType::F32);
  const float* ap = a.data<float>();
  const float* bp = b.data<float>();
  float* yp = y.data<float>();
  for (int64_t i = 0; i < a.numel(); i++) yp[i] = ap[i] + bp[i];
  return y;
}

void add_inplace(Tensor& a, const Tensor& b) {
  float* ap = a.data<float>();
  const float* bp = b.data<float>();
  for (int64_t i = 0; i < a.numel(); i++) ap[i] += bp[i];
}

Tensor skip_scale_add_forward(const Tensor& x, const Tensor& weights, int index, const Tensor& skip) {
  const float w = weights.data<float>()[index];
  Tensor y = Tensor::empty(x.shape(), DType::F32);
  const float* xp = x.data<float>();
  const float* sp = skip.data<float>();
  float* yp = y.data<float>();
  for (int64_t i = 0; i < x.numel(); i++) yp[i] = w * xp[i] + sp[i];
  return y;
}

void skip_scale_add_backward(const Tensor& grad_y, const Tensor& x, const Tensor& weights, int index,
                             Tensor& grad_x, Tensor& grad_weights) {
  const float w = weights.data<float>()[index];
  grad_x = Tensor::empty(x.shape(), DType::F32);
  const float* g = grad_y.data<float>();
  const float* xp = x.data<float>();
  float* gx = grad_x.data<float>();
  double weight_grad = 0;
  for (int64_t i = 0; i < x.numel(); i++) {
    gx[i] = w * g[i];
    weight_grad += double(g[i]) * double(xp[i]);
  }
  grad_weights.data<float>()[index] += float(weight_grad);
}

Tensor scale(const Tensor& x, float s) {
  Tensor y = Tensor::empty(x.shape(), DType::F32);
  const float* xp = x.data<float>();
  float* yp = y.data<float>();
  for (int64_t i = 0; i < x.numel(); i++) yp[i] = s * xp[i];
  return y;
}

}  // namespace iflame::ops::cpu
