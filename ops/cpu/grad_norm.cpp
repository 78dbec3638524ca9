// cpu/grad_norm.cpp: the reference gradient norm (double sums), clipping and finiteness test.
#include "ops/grad_norm.h"

#include <cmath>

namespace iflame::ops::cpu {

Tensor global_grad_norm(const std::vector<Tensor>& grads) {
  double sum_sq = 0;
  for (const Tensor& g : grads) {
    const float* p = g.data<float>();
    for (int64_t i = 0; i < g.numel(); i++) sum_sq += double(p[i]) * double(p[i]);
  }
  return Tensor::full({1}, float(std::sqrt(sum_sq)));
}

Tensor clip_grad_norm(std::vector<Tensor>& grads, float max_norm) {
  Tensor norm = global_grad_norm(grads);
  const float coef = max_norm / (norm.data<float>()[0] + 1e-6f);
  const float clamped = coef > 1.0f ? 1.0f : coef;  // a NaN coefficient stays NaN, as in torch.clamp
  for (Tensor& g : grads) {
    float* p = g.data<float>();
    for (int64_t i = 0; i < g.numel(); i++) p[i] *= clamped;
  }
  return norm;
}

bool all_finite(const std::vector<Tensor>& grads) {
  for (const Tensor& g : grads) {
    const float* p = g.data<float>();
    for (int64_t i = 0; i < g.numel(); i++)
      if (!std::isfinite(p[i])) return false;
  }
  return true;
}

}  // namespace iflame::ops::cpu
