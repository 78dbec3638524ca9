// resample.cpp: argument checks and device dispatch for the hourglass resampling ops.
#include "ops/resample.h"

#include "ops/dispatch.h"
#include "ops/elem_checks.h"

namespace iflame::ops {

namespace {
void check_btd(const Tensor& x, const char* op, const char* what) {
  IFLAME_CHECK(x.defined(), op, ": ", what, ": undefined tensor");
  detail::check_activation(x, op, what, x.device());
  IFLAME_CHECK(x.ndim() == 3, op, ": ", what, ": expected [B, T, d], got ", x.describe());
}
int64_t pooled_length(int64_t T) { return (T + 2) / 3; }
}  // namespace

Tensor avg_pool3_forward(const Tensor& x) {
  check_btd(x, "avg_pool3_forward", "x");
  if (x.device() == Device::CPU) return cpu::avg_pool3_forward(x);
  CUDA_ONLY(return cuda::avg_pool3_forward(x));
}

Tensor avg_pool3_backward(const Tensor& grad_y, int64_t T) {
  const char* op = "avg_pool3_backward";
  check_btd(grad_y, op, "grad_y");
  IFLAME_CHECK(T >= 0 && grad_y.size(1) == pooled_length(T), op, ": grad_y ", grad_y.describe(),
               " does not have ceil(T/3) = ", pooled_length(T), " positions for T = ", T);
  if (grad_y.device() == Device::CPU) return cpu::avg_pool3_backward(grad_y, T);
  CUDA_ONLY(return cuda::avg_pool3_backward(grad_y, T));
}

Tensor repeat3_shift2_forward(const Tensor& x, int64_t T_out) {
  check_btd(x, "repeat3_shift2_forward", "x");
  IFLAME_CHECK(T_out >= 0, "repeat3_shift2_forward: T_out must be >= 0, got ", T_out);
  if (x.device() == Device::CPU) return cpu::repeat3_shift2_forward(x, T_out);
  CUDA_ONLY(return cuda::repeat3_shift2_forward(x, T_out));
}

Tensor repeat3_shift2_backward(const Tensor& grad_y, int64_t S) {
  check_btd(grad_y, "repeat3_shift2_backward", "grad_y");
  IFLAME_CHECK(S >= 0, "repeat3_shift2_backward: S must be >= 0, got ", S);
  if (grad_y.device() == Device::CPU) return cpu::repeat3_shift2_backward(grad_y, S);
  CUDA_ONLY(return cuda::repeat3_shift2_backward(grad_y, S));
}

}  // namespace iflame::ops
