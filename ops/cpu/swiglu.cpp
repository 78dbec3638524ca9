// cpu/swiglu.cpp: the reference SwiGLU gate, plain loops in f32.
#include "ops/swiglu.h"

#include <cmath>
#include <vector>

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

Tensor swiglu_packed_forward(const Tensor& ab) {
  const int64_t P = ab.size(-1) / 2, rows = ab.numel() / (2 * P);
  Shape shape = ab.shape();
  shape.back() = P;
  Tensor y = Tensor::empty(shape, DType::F32);
  const float* in = ab.data<float>();
  float* yp = y.data<float>();
  for (int64_t r = 0; r < rows; r++)
    for (int64_t j = 0; j < P; j++) {
      const float a = in[r * 2 * P + j], b = in[r * 2 * P + P + j];
      yp[r * P + j] = a * sigmoid(a) * b;
    }
  return y;
}

Tensor swiglu_packed_backward(const Tensor& grad_y, const Tensor& ab, Tensor* bias_grad) {
  const int64_t P = ab.size(-1) / 2, rows = ab.numel() / (2 * P);
  Tensor grad_ab = Tensor::empty(ab.shape(), DType::F32);
  const float* g = grad_y.data<float>();
  const float* in = ab.data<float>();
  float* out = grad_ab.data<float>();
  std::vector<double> sums(bias_grad ? 2 * P : 0, 0.0);
  for (int64_t r = 0; r < rows; r++)
    for (int64_t j = 0; j < P; j++) {
      const float gy = g[r * P + j], a = in[r * 2 * P + j], b = in[r * 2 * P + P + j];
      const float s = sigmoid(a);
      const float ga = gy * b * s * (1.0f + a * (1.0f - s)), gb = gy * a * s;
      out[r * 2 * P + j] = ga;
      out[r * 2 * P + P + j] = gb;
      if (bias_grad) {
        sums[j] += ga;
        sums[P + j] += gb;
      }
    }
  if (bias_grad) {
    float* bg = bias_grad->data<float>();
    for (int64_t j = 0; j < 2 * P; j++) bg[j] += static_cast<float>(sums[j]);
  }
  return grad_ab;
}

}  // namespace iflame::ops::cpu
