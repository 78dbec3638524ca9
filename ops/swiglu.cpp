// swiglu.cpp: argument checks and device dispatch for the SwiGLU gate.
#include "ops/swiglu.h"

#include "core/profiler.h"
#include "ops/dispatch.h"
#include "ops/elem_checks.h"

namespace iflame::ops {

namespace {
void check_pair(const Tensor& a, const Tensor& b, const char* op) {
  IFLAME_CHECK(a.defined(), op, ": a: undefined tensor");
  detail::check_activation(a, op, "a", a.device());
  detail::check_activation(b, op, "b", a.device());
  detail::check_shape(b, a.shape(), op, "b");
  IFLAME_CHECK(a.dtype() == b.dtype(), op, ": a and b must share a dtype, got ", a.describe(), " and ",
               b.describe());
}
}  // namespace

Tensor swiglu_forward(const Tensor& a, const Tensor& b) {
  check_pair(a, b, "swiglu_forward");
  PROFILE_OP("swiglu_forward", 0, 3 * a.nbytes(), a.device(), DType::F32);  // reads a, b; writes y
  if (a.device() == Device::CPU) return cpu::swiglu_forward(a, b);
  CUDA_ONLY(return cuda::swiglu_forward(a, b));
}

void swiglu_backward(const Tensor& grad_y, const Tensor& a, const Tensor& b, Tensor& grad_a, Tensor& grad_b) {
  const char* op = "swiglu_backward";
  check_pair(a, b, op);
  detail::check_activation(grad_y, op, "grad_y", a.device());
  detail::check_shape(grad_y, a.shape(), op, "grad_y");
  IFLAME_CHECK(grad_y.dtype() == a.dtype(), op, ": grad_y ", grad_y.describe(), " must have a's dtype ",
               dtype_name(a.dtype()));
  // Reads grad_y, a, b; writes grad_a, grad_b.
  PROFILE_OP("swiglu_backward", 0, grad_y.nbytes() + 4 * a.nbytes(), a.device(), DType::F32);
  if (a.device() == Device::CPU) return cpu::swiglu_backward(grad_y, a, b, grad_a, grad_b);
  CUDA_ONLY(cuda::swiglu_backward(grad_y, a, b, grad_a, grad_b));
}

}  // namespace iflame::ops
