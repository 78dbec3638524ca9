// cpu/optimizer_ops.cpp: reference AdamW, Newton-Schulz and Muon as plain loops.
// The per-element formulas live in ops/optimizer_ops.h (shared with the GPU).
// Newton-Schulz in BF16 mode rounds every stored intermediate with
// round_to_bf16, the way PyTorch's bf16 tensors store them; products of
// bf16-exact operands are accumulated in f32 (cpu::gemm in F32 mode).
#include <cmath>
#include <utility>

#include "ops/linear.h"
#include "ops/optimizer_ops.h"

namespace iflame::ops::cpu {

void adamw_update(Tensor& param, const Tensor& grad, Tensor& moment1, Tensor& moment2, float lr,
                  float beta1, float beta2, float eps, float weight_decay, int64_t step) {
  const AdamWScalars s = adamw_scalars(lr, beta1, beta2, eps, weight_decay, step);
  float* p = param.data<float>();
  const float* g = grad.data<float>();
  float* m = moment1.data<float>();
  float* v = moment2.data<float>();
  const int64_t n = param.numel();
  for (int64_t i = 0; i < n; i++) adamw_element(p[i], g[i], m[i], v[i], s);
}

Tensor newton_schulz_orthogonalize(const Tensor& u, int steps, DType compute) {
  const bool bf = compute == DType::BF16;
  auto R = [bf](float v) { return bf ? round_to_bf16(v) : v; };  // what storing does
  const int64_t rows = u.size(0), cols = u.size(1);
  const bool tr = rows > cols;  // work on the wide orientation: X is [r, c] with r <= c
  const int64_t r = tr ? cols : rows, c = tr ? rows : cols;
  const float* pu = u.data<float>();

  // X = u / (||u||_F + eps), u first stored in the compute dtype.
  Tensor X = Tensor::empty({r, c});
  float* px = X.data<float>();
  for (int64_t i = 0; i < r; i++)
    for (int64_t j = 0; j < c; j++) px[i * c + j] = R(tr ? pu[j * cols + i] : pu[i * cols + j]);
  double sumsq = 0;
  for (int64_t i = 0; i < r * c; i++) sumsq += double(px[i]) * double(px[i]);
  const float denom = R(R(float(std::sqrt(sumsq))) + kNewtonSchulzEps);
  for (int64_t i = 0; i < r * c; i++) px[i] = R(px[i] / denom);

  // out = s1 p + s2 q, elementwise, each piece stored like PyTorch stores it.
  auto combine = [&R](Tensor& out, float s1, const Tensor& p, float s2, const Tensor& q) {
    float* o = out.data<float>();
    const float *a = p.data<float>(), *b = q.data<float>();
    for (int64_t i = 0; i < out.numel(); i++) o[i] = R(R(s1 * a[i]) + R(s2 * b[i]));
  };
  auto round_all = [&R](Tensor& t) {
    float* p = t.data<float>();
    for (int64_t i = 0; i < t.numel(); i++) p[i] = R(p[i]);
  };

  Tensor A = Tensor::empty({r, r}), AA = Tensor::empty({r, r}), B = Tensor::empty({r, r});
  Tensor BX = Tensor::empty({r, c}), Xn = Tensor::empty({r, c});
  for (int it = 0; it < steps; it++) {
    gemm(X, false, X, true, A, 1.0f, 0.0f, DType::F32);  // A = X X^T
    round_all(A);
    gemm(A, false, A, false, AA, 1.0f, 0.0f, DType::F32);  // A A
    round_all(AA);
    combine(B, kNewtonSchulzB, A, kNewtonSchulzC, AA);  // B = b A + c A A
    gemm(B, false, X, false, BX, 1.0f, 0.0f, DType::F32);  // B X
    round_all(BX);
    combine(Xn, kNewtonSchulzA, X, 1.0f, BX);  // X = a X + B X
    std::swap(X, Xn);
  }
  if (!tr) return X;
  return X.transpose(0, 1).contiguous();
}

void muon_update(Tensor& param, const Tensor& grad, Tensor& momentum, float lr, float weight_decay,
                 float momentum_coef, int ns_steps, DType ns_compute) {
  const int64_t n = param.numel();
  Tensor u = Tensor::empty(param.shape());
  float* pu = u.data<float>();
  float* m = momentum.data<float>();
  const float* g = grad.data<float>();
  for (int64_t i = 0; i < n; i++) pu[i] = muon_momentum_element(m[i], g[i], momentum_coef);

  const Tensor X = newton_schulz_orthogonalize(u, ns_steps, ns_compute);
  const float decay = decoupled_decay(lr, weight_decay);
  const float step_size = muon_step_size(lr, param.size(0), param.size(1));
  float* p = param.data<float>();
  const float* px = X.data<float>();
  for (int64_t i = 0; i < n; i++) muon_apply_element(p[i], px[i], decay, step_size);
}

}  // namespace iflame::ops::cpu
