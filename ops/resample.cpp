// resample.cpp: argument checks and device dispatch for the hourglass resampling ops.
#include "ops/resample.h"

#include "core/profiler.h"
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
// Bytes of a [B, T, d] tensor shaped like x but with T positions.
double bytes_with_length(const Tensor& x, int64_t T) {
  return double(x.size(0)) * T * x.size(2) * dtype_size(x.dtype());
}
}  // namespace

Tensor avg_pool3_forward(const Tensor& x) {
  check_btd(x, "avg_pool3_forward", "x");
  // Reads x [B, T, d], writes [B, ceil(T/3), d] (as for the three below: input read, output written).
  PROFILE_OP("avg_pool3_forward", 0, x.nbytes() + bytes_with_length(x, pooled_length(x.size(1))), x.device(),
             DType::F32);
  if (x.device() == Device::CPU) return cpu::avg_pool3_forward(x);
  CUDA_ONLY(return cuda::avg_pool3_forward(x));
}

Tensor avg_pool3_backward(const Tensor& grad_y, int64_t T) {
  const char* op = "avg_pool3_backward";
  check_btd(grad_y, op, "grad_y");
  IFLAME_CHECK(T >= 0 && grad_y.size(1) == pooled_length(T), op, ": grad_y ", grad_y.describe(),
               " does not have ceil(T/3) = ", pooled_length(T), " positions for T = ", T);
  PROFILE_OP("avg_pool3_backward", 0, grad_y.nbytes() + bytes_with_length(grad_y, T), grad_y.device(), DType::F32);
  if (grad_y.device() == Device::CPU) return cpu::avg_pool3_backward(grad_y, T);
  CUDA_ONLY(return cuda::avg_pool3_backward(grad_y, T));
}

Tensor repeat3_shift2_forward(const Tensor& x, int64_t T_out) {
  check_btd(x, "repeat3_shift2_forward", "x");
  IFLAME_CHECK(T_out >= 0, "repeat3_shift2_forward: T_out must be >= 0, got ", T_out);
  PROFILE_OP("repeat3_shift2_forward", 0, x.nbytes() + bytes_with_length(x, T_out), x.device(), DType::F32);
  if (x.device() == Device::CPU) return cpu::repeat3_shift2_forward(x, T_out);
  CUDA_ONLY(return cuda::repeat3_shift2_forward(x, T_out));
}

Tensor repeat3_shift2_backward(const Tensor& grad_y, int64_t S) {
  check_btd(grad_y, "repeat3_shift2_backward", "grad_y");
  IFLAME_CHECK(S >= 0, "repeat3_shift2_backward: S must be >= 0, got ", S);
  PROFILE_OP("repeat3_shift2_backward", 0, grad_y.nbytes() + bytes_with_length(grad_y, S), grad_y.device(),
             DType::F32);
  if (grad_y.device() == Device::CPU) return cpu::repeat3_shift2_backward(grad_y, S);
  CUDA_ONLY(return cuda::repeat3_shift2_backward(grad_y, S));
}

}  // namespace iflame::ops
