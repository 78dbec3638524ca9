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

namespace {
void check_packed(const Tensor& ab, const char* op) {
  IFLAME_CHECK(ab.defined(), op, ": ab: undefined tensor");
  detail::check_activation(ab, op, "ab", ab.device());
  IFLAME_CHECK(ab.ndim() >= 1 && ab.size(-1) % 2 == 0 && ab.size(-1) > 0, op,
               ": ab must be [..., 2P] (a then b), got ", ab.describe());
}
Shape half_shape(const Tensor& ab) {
  Shape s = ab.shape();
  s.back() /= 2;
  return s;
}
}  // namespace

Tensor swiglu_packed_forward(const Tensor& ab) {
  check_packed(ab, "swiglu_packed_forward");
  PROFILE_OP("swiglu_forward", 0, ab.nbytes() + ab.nbytes() / 2, ab.device(), DType::F32);  // reads ab; writes y
  if (ab.device() == Device::CPU) return cpu::swiglu_packed_forward(ab);
  CUDA_ONLY(return cuda::swiglu_packed_forward(ab));
}

Tensor swiglu_packed_backward(const Tensor& grad_y, const Tensor& ab, Tensor* bias_grad) {
  const char* op = "swiglu_packed_backward";
  check_packed(ab, op);
  detail::check_activation(grad_y, op, "grad_y", ab.device());
  detail::check_shape(grad_y, half_shape(ab), op, "grad_y");
  IFLAME_CHECK(grad_y.dtype() == ab.dtype(), op, ": grad_y ", grad_y.describe(), " must have ab's dtype ",
               dtype_name(ab.dtype()));
  if (bias_grad) {
    detail::check_exact(*bias_grad, op, "bias_grad", DType::F32, ab.device());
    detail::check_shape(*bias_grad, {ab.size(-1)}, op, "bias_grad");
  }
  // Reads grad_y and ab; writes grad_ab.
  PROFILE_OP("swiglu_backward", 0, grad_y.nbytes() + 2 * ab.nbytes(), ab.device(), DType::F32);
  if (ab.device() == Device::CPU) return cpu::swiglu_packed_backward(grad_y, ab, bias_grad);
  CUDA_ONLY(return cuda::swiglu_packed_backward(grad_y, ab, bias_grad));
}

}  // namespace iflame::ops
