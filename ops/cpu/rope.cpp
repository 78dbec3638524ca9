// cpu/rope.cpp: the reference RoPE rotation, plain loops in f32 (see rope.h for the formula).
#include <cmath>

#include "ops/rope.h"

namespace iflame::ops::cpu {

namespace {
// direction +1: forward rotation; -1: its inverse (the backward).
Tensor rotate(const Tensor& x, int64_t pos_offset, float direction) {
  const int64_t B = x.size(0), T = x.size(1), H = x.size(2), D = x.size(3), half = D / 2;
  const std::vector<float> freq = rope_frequencies(D);
  Tensor y = Tensor::empty(x.shape(), DType::F32);
  const float* xp = x.data<float>();
  float* yp = y.data<float>();
  for (int64_t b = 0; b < B; b++)
    for (int64_t t = 0; t < T; t++) {
      const float pos = float(t + pos_offset);
      for (int64_t h = 0; h < H; h++) {
        const int64_t base = ((b * T + t) * H + h) * D;
        for (int64_t j = 0; j < half; j++) {
          const float angle = pos * freq[j];
          const float c = std::cos(angle), s = direction * std::sin(angle);
          const float x1 = xp[base + j], x2 = xp[base + half + j];
          yp[base + j] = x1 * c + x2 * s;
          yp[base + half + j] = -x1 * s + x2 * c;
        }
      }
    }
  return y;
}
}  // namespace

Tensor rope_forward(const Tensor& x, int64_t pos_offset) { return rotate(x, pos_offset, 1.0f); }
Tensor rope_backward(const Tensor& grad_y, int64_t pos_offset) { return rotate(grad_y, pos_offset, -1.0f); }

}  // namespace iflame::ops::cpu
