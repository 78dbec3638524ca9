// grad_norm.cpp: argument checks and device dispatch for the gradient norm, clipping and finiteness test.
#include "ops/grad_norm.h"

#include <cmath>

#include "core/profiler.h"
#include "ops/dispatch.h"
#include "ops/elem_checks.h"

namespace iflame::ops {

namespace {
// All gradients f32, contiguous, on one device; returns that device.
Device check_grads(const std::vector<Tensor>& grads, const char* op) {
  const Device dev = grads.empty() || !grads[0].defined() ? Device::CPU : grads[0].device();
  for (size_t i = 0; i < grads.size(); i++) {
    const std::string what = str("grads[", i, "]");
    detail::check_exact(grads[i], op, what.c_str(), DType::F32, dev);
  }
  return dev;
}
double total_bytes(const std::vector<Tensor>& grads) {
  double n = 0;
  for (const Tensor& g : grads) n += g.nbytes();
  return n;
}
}  // namespace

Tensor global_grad_norm(const std::vector<Tensor>& grads) {
  const Device dev = check_grads(grads, "global_grad_norm");
  PROFILE_OP("global_grad_norm", 0, total_bytes(grads), dev, DType::F32);  // reads every gradient once
  if (dev == Device::CPU) return cpu::global_grad_norm(grads);
  CUDA_ONLY(return cuda::global_grad_norm(grads));
}

Tensor clip_grad_norm(std::vector<Tensor>& grads, float max_norm) {
  IFLAME_CHECK(max_norm > 0 && std::isfinite(max_norm), "clip_grad_norm: max_norm must be positive and finite, got ",
               max_norm);
  const Device dev = check_grads(grads, "clip_grad_norm");
  // Reads every gradient for the norm, then reads and writes it scaled.
  PROFILE_OP("clip_grad_norm", 0, 3 * total_bytes(grads), dev, DType::F32);
  if (dev == Device::CPU) return cpu::clip_grad_norm(grads, max_norm);
  CUDA_ONLY(return cuda::clip_grad_norm(grads, max_norm));
}

bool all_finite(const std::vector<Tensor>& grads) {
  const Device dev = check_grads(grads, "all_finite");
  PROFILE_OP("all_finite", 0, total_bytes(grads), dev, DType::F32);  // reads every gradient once
  if (dev == Device::CPU) return cpu::all_finite(grads);
  CUDA_ONLY(return cuda::all_finite(grads));
}

}  // namespace iflame::ops
