// cross_entropy.cpp: argument checks and device dispatch for the cross-entropy loss.
#include "ops/cross_entropy.h"

#include "core/profiler.h"
#include "ops/dispatch.h"
#include "ops/elem_checks.h"

namespace iflame::ops {

namespace {
void check_logits_targets(const Tensor& logits, const Tensor& targets, int ignore_index, const char* op) {
  IFLAME_CHECK(logits.defined(), op, ": logits: undefined tensor");
  const Device dev = logits.device();
  detail::check_activation(logits, op, "logits", dev);
  IFLAME_CHECK(logits.ndim() >= 1 && logits.size(-1) > 0, op, ": logits: expected [N, V] with V > 0, got ",
               logits.describe());
  detail::check_exact(targets, op, "targets", DType::I32, dev);
  Shape rows_shape(logits.shape().begin(), logits.shape().end() - 1);
  detail::check_shape(targets, rows_shape, op, "targets");
  if (dev == Device::CPU) {
    const int64_t V = logits.size(-1);
    const int32_t* t = targets.data<int32_t>();
    for (int64_t n = 0; n < targets.numel(); n++)
      IFLAME_CHECK(t[n] == ignore_index || (t[n] >= 0 && t[n] < V), op, ": target ", t[n], " of row ", n,
                   " is outside [0, ", V, ") and is not ignore_index ", ignore_index);
  }
}
void check_scalar(const Tensor& t, Device dev, const char* op, const char* what) {
  detail::check_exact(t, op, what, DType::F32, dev);
  detail::check_shape(t, {1}, op, what);
}
}  // namespace

CrossEntropyOutput cross_entropy_forward(const Tensor& logits, const Tensor& targets, int ignore_index) {
  check_logits_targets(logits, targets, ignore_index, "cross_entropy_forward");
  // Reads logits and targets, writes lse (f32 per row) and three scalars.
  PROFILE_OP("cross_entropy_forward", 0, logits.nbytes() + targets.nbytes() + 4 * targets.numel(),
             logits.device(), DType::F32);
  if (logits.device() == Device::CPU) return cpu::cross_entropy_forward(logits, targets, ignore_index);
  CUDA_ONLY(return cuda::cross_entropy_forward(logits, targets, ignore_index));
}

Tensor cross_entropy_backward(const Tensor& grad_loss, const Tensor& logits, const Tensor& targets,
                              const CrossEntropyOutput& fwd, int ignore_index) {
  const char* op = "cross_entropy_backward";
  check_logits_targets(logits, targets, ignore_index, op);
  const Device dev = logits.device();
  check_scalar(grad_loss, dev, op, "grad_loss");
  check_scalar(fwd.valid_count, dev, op, "fwd.valid_count");
  detail::check_exact(fwd.lse, op, "fwd.lse", DType::F32, dev);
  detail::check_shape(fwd.lse, {targets.numel()}, op, "fwd.lse");
  // Reads logits, targets, lse; writes grad_logits like logits.
  PROFILE_OP("cross_entropy_backward", 0, 2 * logits.nbytes() + targets.nbytes() + fwd.lse.nbytes(), dev,
             DType::F32);
  if (dev == Device::CPU) return cpu::cross_entropy_backward(grad_loss, logits, targets, fwd, ignore_index);
  CUDA_ONLY(return cuda::cross_entropy_backward(grad_loss, logits, targets, fwd, ignore_index));
}

}  // namespace iflame::ops
