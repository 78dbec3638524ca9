// cpu/resample.cpp: the reference average pooling by 3 and repeat-3-shift-2, plain loops in f32.
#include "ops/resample.h"

#include <algorithm>

namespace iflame::ops::cpu {

Tensor avg_pool3_forward(const Tensor& x) {
  const int64_t B = x.size(0), T = x.size(1), d = x.size(2), S = (T + 2) / 3;
  Tensor y = Tensor::zeros({B, S, d}, DType::F32);
  const float* xp = x.data<float>();
  float* yp = y.data<float>();
  for (int64_t b = 0; b < B; b++)
    for (int64_t s = 0; s < S; s++) {
      const int64_t begin = 3 * s, end = std::min(3 * s + 3, T);
      const float count = float(end - begin);
      for (int64_t j = 0; j < d; j++) {
        float sum = 0;
        for (int64_t t = begin; t < end; t++) sum += xp[(b * T + t) * d + j];
        yp[(b * S + s) * d + j] = sum / count;
      }
    }
  return y;
}

Tensor avg_pool3_backward(const Tensor& grad_y, int64_t T) {
  const int64_t B = grad_y.size(0), S = grad_y.size(1), d = grad_y.size(2);
  Tensor grad_x = Tensor::empty({B, T, d}, DType::F32);
  const float* g = grad_y.data<float>();
  float* gx = grad_x.data<float>();
  for (int64_t b = 0; b < B; b++)
    for (int64_t t = 0; t < T; t++) {
      const int64_t s = t / 3;
      const float count = float(std::min(3 * s + 3, T) - 3 * s);
      for (int64_t j = 0; j < d; j++) gx[(b * T + t) * d + j] = g[(b * S + s) * d + j] / count;
    }
  return grad_x;
}

Tensor repeat3_shift2_forward(const Tensor& x, int64_t T_out) {
  const int64_t B = x.size(0), S = x.size(1), d = x.size(2);
  Tensor y = Tensor::zeros({B, T_out, d}, DType::F32);
  const float* xp = x.data<float>();
  float* yp = y.data<float>();
  for (int64_t b = 0; b < B; b++)
    for (int64_t t = 2; t < T_out; t++) {
      const int64_t s = (t - 2) / 3;
      if (s >= S) break;
      for (int64_t j = 0; j < d; j++) yp[(b * T_out + t) * d + j] = xp[(b * S + s) * d + j];
    }
  return y;
}

Tensor repeat3_shift2_backward(const Tensor& grad_y, int64_t S) {
  const int64_t B = grad_y.size(0), T_out = grad_y.size(1), d = grad_y.size(2);
  Tensor grad_x = Tensor::zeros({B, S, d}, DType::F32);
  const float* g = grad_y.data<float>();
  float* gx = grad_x.data<float>();
  for (int64_t b = 0; b < B; b++)
    for (int64_t s = 0; s < S; s++)
      for (int64_t t = 3 * s + 2; t < std::min(3 * s + 5, T_out); t++)
        for (int64_t j = 0; j < d; j++) gx[(b * S + s) * d + j] += g[(b * T_out + t) * d + j];
  return grad_x;
}

}  // namespace iflame::ops::cpu
