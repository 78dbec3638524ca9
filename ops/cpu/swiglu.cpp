// cpu/swiglu.cpp: the reference SwiGLU gate, plain loops in f32.
#include "ops/swiglu.h"

#include <cmath>

namespace iflame::ops::cpu {

namespace {
float sigmoid(float v) { return 1.0f / (1.0f + std::exp(-v)); }
}  // namespace

Tensor swiglu_forward(const Tensor& a, const Tensor& b) {
  Tensor y = Tensor::empty(a.shape(), DType::F32);
  const float* ap = a.data<float>();
  const float* bp = b.data<float>();
  float* yp = y.data<float>();
  for (int64_t i = 0; i < a.numel(); i++) yp[i] = ap[i] * sigmoid(ap[i]) * bp[i];
  return y;
}

void swiglu_backward(const Tensor& grad_y, const Tensor& a, const Tensor& b, Tensor& grad_a, Tensor& grad_b) {
  grad_a = Tensor::empty(a.shape(), DType::F32);
  grad_b = Tensor::empty(b.shape(), DType::F32);
  const float* g = grad_y.data<float>();
  const float* ap = a.data<float>();
  const float* bp = b.data<float>();
  float* ga = grad_a.data<float>();
  float* gb = grad_b.data<float>();
  for (int64_t i = 0; i < a.numel(); i++) {
    const float s = sigmoid(ap[i]);
    ga[i] = g[i] * bp[i] * s * (1.0f + ap[i] * (1.0f - s));
    gb[i] = g[i] * ap[i] * s;
  }
}

}  // namespace iflame::ops::cpu
