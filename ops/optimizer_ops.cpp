// optimizer_ops.cpp: argument checks for the optimizer updates, then CPU or CUDA by device.
#include "ops/optimizer_ops.h"

#include <algorithm>

#include "core/profiler.h"

namespace iflame::ops {

namespace {

void check_state(const Tensor& t, const Tensor& param, const char* what) {
  check_tensor(t, what, DType::F32, param.device());
  check_same_shape(t, param, what);
}

void check_compute(DType compute, const char* op) {
  IFLAME_CHECK(compute == DType::F32 || compute == DType::BF16, op,
               ": Newton-Schulz compute dtype must be f32 or bf16, got ", dtype_name(compute));
}

// Newton-Schulz on u [r, c], with n = min(r, c) and m = max(r, c), per step:
// A = X X^T (2 n^2 m), A A (2 n^3), B X (2 n^2 m) FLOPs.
double newton_schulz_flops(const Tensor& u, int steps) {
  const double n = double(std::min(u.size(0), u.size(1))), m = double(std::max(u.size(0), u.size(1)));
  return steps * (4 * n * n * m + 2 * n * n * n);
}

}  // namespace

void adamw_update(Tensor& param, const Tensor& grad, Tensor& moment1, Tensor& moment2, float lr,
                  float beta1, float beta2, float eps, float weight_decay, int64_t step) {
  IFLAME_CHECK(param.defined(), "adamw_update: param is undefined");
  check_tensor(param, "adamw_update: param", DType::F32, param.device());
  check_state(grad, param, "adamw_update: grad");
  check_state(moment1, param, "adamw_update: moment1");
  check_state(moment2, param, "adamw_update: moment2");
  IFLAME_CHECK(step >= 1, "adamw_update: step must be >= 1 (counted after incrementing), got ", step);
  // Reads param, grad, moment1, moment2; writes param, moment1, moment2 (all f32).
  PROFILE_OP("adamw_update", 0, 7 * param.nbytes(), param.device(), DType::F32);
  if (param.is_cuda())
    CUDA_ONLY(return cuda::adamw_update(param, grad, moment1, moment2, lr, beta1, beta2, eps,
                                        weight_decay, step));
  cpu::adamw_update(param, grad, moment1, moment2, lr, beta1, beta2, eps, weight_decay, step);
}

Tensor newton_schulz_orthogonalize(const Tensor& u, int steps, DType compute) {
  IFLAME_CHECK(u.defined() && u.ndim() == 2, "newton_schulz_orthogonalize: u must be 2-D, got ",
               u.describe());
  check_tensor(u, "newton_schulz_orthogonalize: u", DType::F32, u.device());
  check_compute(compute, "newton_schulz_orthogonalize");
  IFLAME_CHECK(steps >= 0, "newton_schulz_orthogonalize: steps must be >= 0, got ", steps);
  // Bytes: reads u, writes the result (intermediates not counted).
  PROFILE_OP("newton_schulz", newton_schulz_flops(u, steps), 2 * u.nbytes(), u.device(), compute);
  if (u.is_cuda()) CUDA_ONLY(return cuda::newton_schulz_orthogonalize(u, steps, compute));
  return cpu::newton_schulz_orthogonalize(u, steps, compute);
}

void muon_update(Tensor& param, const Tensor& grad, Tensor& momentum, float lr, float weight_decay,
                 float momentum_coef, int ns_steps, DType ns_compute) {
  IFLAME_CHECK(param.defined() && param.ndim() == 2, "muon_update: param must be 2-D, got ",
               param.describe());
  check_tensor(param, "muon_update: param", DType::F32, param.device());
  check_state(grad, param, "muon_update: grad");
  check_state(momentum, param, "muon_update: momentum");
  check_compute(ns_compute, "muon_update");
  IFLAME_CHECK(ns_steps >= 0, "muon_update: ns_steps must be >= 0, got ", ns_steps);
  // FLOPs: its Newton-Schulz. Bytes: reads param, grad, momentum; writes param, momentum.
  PROFILE_OP("muon_update", newton_schulz_flops(param, ns_steps), 5 * param.nbytes(), param.device(), ns_compute);
  if (param.is_cuda())
    CUDA_ONLY(return cuda::muon_update(param, grad, momentum, lr, weight_decay, momentum_coef,
                                       ns_steps, ns_compute));
  cpu::muon_update(param, grad, momentum, lr, weight_decay, momentum_coef, ns_steps, ns_compute);
}

void muon_update_group(std::vector<Tensor*> params, const std::vector<const Tensor*>& grads,
                       std::vector<Tensor*> momenta, float lr, float weight_decay, float momentum_coef,
                       int ns_steps, DType ns_compute) {
  const char* op = "muon_update_group";
  IFLAME_CHECK(!params.empty() && params.size() <= size_t(kMuonGroupMax) && grads.size() == params.size() &&
                   momenta.size() == params.size(),
               op, ": needs 1 to ", kMuonGroupMax, " parameters with as many gradients and momenta, got ",
               params.size(), ", ", grads.size(), ", ", momenta.size());
  check_compute(ns_compute, op);
  IFLAME_CHECK(ns_steps >= 0, op, ": ns_steps must be >= 0, got ", ns_steps);
  const Tensor& first = *params[0];
  IFLAME_CHECK(first.defined() && first.ndim() == 2, op, ": parameters must be 2-D, got ", first.describe());
  const int64_t r = std::min(first.size(0), first.size(1)), c = std::max(first.size(0), first.size(1));
  double flops = 0, bytes = 0;
  for (size_t i = 0; i < params.size(); i++) {
    const Tensor& p = *params[i];
    check_tensor(p, "muon_update_group: param", DType::F32, first.device());
    IFLAME_CHECK(p.ndim() == 2 && std::min(p.size(0), p.size(1)) == r && std::max(p.size(0), p.size(1)) == c,
                 op, ": parameter ", i, " is ", p.describe(), ", not [", r, ", ", c, "] or [", c, ", ", r, "]");
    check_state(*grads[i], p, "muon_update_group: grad");
    check_state(*momenta[i], p, "muon_update_group: momentum");
    flops += newton_schulz_flops(p, ns_steps);
    bytes += 5.0 * p.nbytes();
  }
  // FLOPs: the Newton-Schulz of every member. Bytes: as muon_update's, summed.
  PROFILE_OP("muon_update_group", flops, bytes, first.device(), ns_compute);
  if (first.is_cuda())
    CUDA_ONLY(return cuda::muon_update_group(params, grads, momenta, lr, weight_decay, momentum_coef, ns_steps,
                                             ns_compute));
  // The CPU reference: muon_update on each (what the GPU's batched form must equal).
  for (size_t i = 0; i < params.size(); i++)
    cpu::muon_update(*params[i], *grads[i], *momenta[i], lr, weight_decay, momentum_coef, ns_steps, ns_compute);
}

}  // namespace iflame::ops
