// optimizer_ops.h: in-place parameter updates of the optimizers (spec §3):
// AdamW, and Muon with its Newton-Schulz orthogonalisation. Parameters,
// gradients and optimizer state are contiguous f32 tensors on one device.
// Every formula is written once, in the "formulas" section below, and both the
// CPU reference and the CUDA kernels call those same lines.
#pragma once
#include <algorithm>
#include <cmath>
#include <vector>

#include "ops/dispatch.h"

namespace iflame::ops {

// ---- formulas (host and device) ---------------------------------------------

// Newton-Schulz coefficients of Muon's quintic iteration, and the epsilon of its normalisation.
constexpr float kNewtonSchulzA = 3.4445f, kNewtonSchulzB = -4.7750f, kNewtonSchulzC = 2.0315f;
constexpr float kNewtonSchulzEps = 1e-7f;

// Decoupled weight decay, applied to every parameter first: p *= 1 - lr*wd.
inline float decoupled_decay(float lr, float weight_decay) {
  return float(1.0 - double(lr) * double(weight_decay));
}

// AdamW's per-step scalars, computed once on the host (in double).
struct AdamWScalars {
  float decay;      // 1 - lr*wd
  float beta1, beta2, eps;
  float step_size;  // lr * sqrt(1 - b2^t) / (1 - b1^t)
};
inline AdamWScalars adamw_scalars(float lr, float beta1, float beta2, float eps, float weight_decay,
                                  int64_t step) {
  const double bc1 = 1.0 - std::pow(double(beta1), double(step));
  const double bc2 = 1.0 - std::pow(double(beta2), double(step));
  return {decoupled_decay(lr, weight_decay), beta1, beta2, eps,
          float(double(lr) * std::sqrt(bc2) / bc1)};
}
// One element of AdamW.
IFLAME_HD void adamw_element(float& p, float g, float& m, float& v, const AdamWScalars& s) {
  p *= s.decay;
  m = s.beta1 * m + (1.0f - s.beta1) * g;
  v = s.beta2 * v + (1.0f - s.beta2) * g * g;
  p -= s.step_size * (m / (s.eps + sqrtf(v)));
}

// Muon's momentum and Nesterov direction for one element: returns u.
IFLAME_HD float muon_momentum_element(float& m, float g, float momentum_coef) {
  m = momentum_coef * m + g;
  return g + momentum_coef * m;
}
// Muon's step size for a [rows, cols] parameter: lr * 0.2 * sqrt(max(rows, cols)).
inline float muon_step_size(float lr, int64_t rows, int64_t cols) {
  return float(double(lr) * 0.2 * std::sqrt(double(std::max(rows, cols))));
}
// Applies one element of the orthogonalised update x.
IFLAME_HD void muon_apply_element(float& p, float x, float decay /*1 - lr*wd*/, float step_size) {
  p *= decay;
  p -= step_size * x;
}

// ---- the ops -----------------------------------------------------------------

// AdamW, with `step` the step count t after incrementing (>= 1):
//   p *= 1 - lr*wd;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
//   p -= lr * (m / (eps + sqrt(v))) * sqrt(1 - b2^t) / (1 - b1^t).
void adamw_update(Tensor& param, const Tensor& grad, Tensor& moment1, Tensor& moment2, float lr,
                  float beta1, float beta2, float eps, float weight_decay, int64_t step);

// Approximately orthogonalises u (f32 2-D [rows, cols]): the result has u's
// singular vectors and singular values in a band around 1 (about 0.7 .. 1.2 after 5 steps).
//   transpose if rows > cols; X = u / (||u||_F + 1e-7);
//   `steps` times: A = X X^T; B = b A + c A A; X = a X + B X;  transpose back.
// compute BF16 stores every intermediate in bf16 the way PyTorch's bf16 tensors
// do: X starts as bf16(u); every product is accumulated in f32 and stored in
// bf16, and so is every elementwise step (b*A, c*AA, their sum, a*X, the sum).
// compute F32 keeps everything in f32. Returns a new f32 tensor shaped like u.
Tensor newton_schulz_orthogonalize(const Tensor& u, int steps, DType compute);

// Muon for one 2-D parameter [rows, cols]:
//   m = momentum_coef m + g;  u = g + momentum_coef m  (Nesterov);
//   X = newton_schulz_orthogonalize(u, ns_steps, ns_compute);
//   p *= 1 - lr*wd;  p -= lr * 0.2 * sqrt(max(rows, cols)) * X.
void muon_update(Tensor& param, const Tensor& grad, Tensor& momentum, float lr, float weight_decay,
                 float momentum_coef, int ns_steps, DType ns_compute);

// muon_update for several parameters at once, whose shapes are all [r, c] or
// [c, r] (r <= c: the orientation Newton-Schulz works in). The result equals
// muon_update on each; on the GPU the orthogonalisation of the whole group
// runs as strided-batched products and group-wide element-wise kernels, a few
// dozen launches for the group instead of about thirty per parameter (the
// published model has 169 Muon parameters of three shapes). At most
// kMuonGroupMax parameters per call.
constexpr int kMuonGroupMax = 64;
void muon_update_group(std::vector<Tensor*> params, const std::vector<const Tensor*>& grads,
                       std::vector<Tensor*> momenta, float lr, float weight_decay, float momentum_coef,
                       int ns_steps, DType ns_compute);

namespace cpu {
void adamw_update(Tensor& param, const Tensor& grad, Tensor& moment1, Tensor& moment2, float lr,
                  float beta1, float beta2, float eps, float weight_decay, int64_t step);
Tensor newton_schulz_orthogonalize(const Tensor& u, int steps, DType compute);
void muon_update(Tensor& param, const Tensor& grad, Tensor& momentum, float lr, float weight_decay,
                 float momentum_coef, int ns_steps, DType ns_compute);
}  // namespace cpu

namespace cuda {
void muon_update_group(std::vector<Tensor*> params, const std::vector<const Tensor*>& grads,
                       std::vector<Tensor*> momenta, float lr, float weight_decay, float momentum_coef,
                       int ns_steps, DType ns_compute);
void adamw_update(Tensor& param, const Tensor& grad, Tensor& moment1, Tensor& moment2, float lr,
                  float beta1, float beta2, float eps, float weight_decay, int64_t step);
Tensor newton_schulz_orthogonalize(const Tensor& u, int steps, DType compute);
void muon_update(Tensor& param, const Tensor& grad, Tensor& momentum, float lr, float weight_decay,
                 float momentum_coef, int ns_steps, DType ns_compute);
}  // namespace cuda

}  // namespace iflame::ops
