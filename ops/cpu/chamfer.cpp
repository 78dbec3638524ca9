// cpu/chamfer.cpp: the reference Chamfer distance matrix: plain loops, one
// OpenMP task per pair of clouds, minima in f32, means in double.
#include <cmath>
#include <limits>

#include "ops/chamfer.h"

namespace iflame::ops::cpu {

namespace {
// (1/P) sum_p min_q ||x_p - y_q||^2 for one pair of clouds.
double directed_mean(const float* x, int64_t P, const float* y, int64_t Q) {
  double sum = 0;
  for (int64_t p = 0; p < P; p++) {
    const float px = x[3 * p], py = x[3 * p + 1], pz = x[3 * p + 2];
    float best = std::numeric_limits<float>::infinity();
    for (int64_t q = 0; q < Q; q++) {
      const float dx = px - y[3 * q], dy = py - y[3 * q + 1], dz = pz - y[3 * q + 2];
      const float d = dx * dx + dy * dy + dz * dz;
      best = std::fmin(best, d);
    }
    sum += best;
  }
  return sum / double(P);
}
}  // namespace

Tensor directed_chamfer(const Tensor& a, const Tensor& b) {
  const int64_t Na = a.size(0), P = a.size(1), Nb = b.size(0), Q = b.size(1);
  Tensor out = Tensor::empty({Na, Nb}, DType::F32);
  const float* pa = a.data<float>();
  const float* pb = b.data<float>();
  float* po = out.data<float>();
#pragma omp parallel for schedule(dynamic)
  for (int64_t ij = 0; ij < Na * Nb; ij++) {
    const int64_t i = ij / Nb, j = ij % Nb;
    po[ij] = float(directed_mean(pa + i * P * 3, P, pb + j * Q * 3, Q));
  }
  return out;
}

Tensor chamfer_matrix(const Tensor& a, const Tensor& b) {
  const int64_t Na = a.size(0), P = a.size(1), Nb = b.size(0), Q = b.size(1);
  Tensor out = Tensor::empty({Na, Nb}, DType::F32);
  const float* pa = a.data<float>();
  const float* pb = b.data<float>();
  float* po = out.data<float>();
#pragma omp parallel for schedule(dynamic)
  for (int64_t ij = 0; ij < Na * Nb; ij++) {
    const int64_t i = ij / Nb, j = ij % Nb;
    const float* x = pa + i * P * 3;
    const float* y = pb + j * Q * 3;
    po[ij] = float(directed_mean(x, P, y, Q) + directed_mean(y, Q, x, P));
  }
  return out;
}

}  // namespace iflame::ops::cpu
