// cpu/rms_norm.cpp: the reference RMSNorm, plain loops; sums in double, values in f32.
#include "ops/rms_norm.h"

#include <cmath>
#include <vector>

namespace iflame::ops::cpu {

Tensor rms_norm_forward(const Tensor& x, const Tensor& weight, float eps, Tensor& inv_rms) {
  const int64_t d = x.size(-1), rows = x.numel() / d;
  Tensor y = Tensor::empty(x.shape(), DType::F32);
  inv_rms = Tensor::empty({rows}, DType::F32);
  const float* xp = x.data<float>();
  const float* w = weight.data<float>();
  float* yp = y.data<float>();
  float* inv = inv_rms.data<float>();
  for (int64_t r = 0; r < rows; r++) {
    const float* xr = xp + r * d;
    double sum_sq = 0;
    for (int64_t j = 0; j < d; j++) sum_sq += double(xr[j]) * double(xr[j]);
    const float mean_sq = float(sum_sq / double(d));
    const float inv_r = 1.0f / std::sqrt(mean_sq + eps);
    inv[r] = inv_r;
    for (int64_t j = 0; j < d; j++) yp[r * d + j] = xr[j] * inv_r * w[j];
  }
  return y;
}

Tensor rms_norm_backward(const Tensor& grad_y, const Tensor& x, const Tensor& weight, const Tensor& inv_rms,
                         Tensor& grad_weight, Tensor* accumulate) {
  const int64_t d = x.size(-1), rows = x.numel() / d;
  Tensor grad_x = accumulate ? *accumulate : Tensor::empty(x.shape(), DType::F32);
  const float* g = grad_y.data<float>();
  const float* xp = x.data<float>();
  const float* w = weight.data<float>();
  const float* inv = inv_rms.data<float>();
  float* gx = grad_x.data<float>();
  float* gw = grad_weight.data<float>();
  std::vector<double> weight_sum(d, 0.0);  // sum over rows, added to grad_weight at the end
  for (int64_t r = 0; r < rows; r++) {
    const float* gr = g + r * d;
    const float* xr = xp + r * d;
    // mean over the row of (grad_y * weight) * normalized x
    double dot = 0;
    for (int64_t j = 0; j < d; j++) dot += double(gr[j]) * w[j] * (double(xr[j]) * inv[r]);
    const float mean_dot = float(dot / double(d));
    for (int64_t j = 0; j < d; j++) {
      const float normalized = xr[j] * inv[r];
      const float value = inv[r] * (gr[j] * w[j] - normalized * mean_dot);
      gx[r * d + j] = accumulate ? gx[r * d + j] + value : value;  // add()'s sum, in its order
      weight_sum[j] += double(gr[j]) * normalized;
    }
  }
  for (int64_t j = 0; j < d; j++) gw[j] += float(weight_sum[j]);
  return grad_x;
}

}  // namespace iflame::ops::cpu
