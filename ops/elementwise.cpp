// elementwise.cpp: argument checks and device dispatch for the element-wise ops.
#include "ops/elementwise.h"

#include "core/profiler.h"
#include "ops/dispatch.h"
#include "ops/elem_checks.h"

namespace iflame::ops {

namespace {
void check_binary(const Tensor& a, const Tensor& b, const char* op, const char* a_name, const char* b_name) {
  IFLAME_CHECK(a.defined(), op, ": ", a_name, ": undefined tensor");
  detail::check_activation(a, op, a_name, a.device());
  detail::check_activation(b, op, b_name, a.device());
  detail::check_shape(b, a.shape(), op, b_name);
}
void check_weights(const Tensor& weights, int index, Device dev, const char* op, const char* what) {
  detail::check_exact(weights, op, what, DType::F32, dev);
  IFLAME_CHECK(weights.ndim() == 1, op, ": ", what, ": expected a vector [n], got ", weights.describe());
  IFLAME_CHECK(index >= 0 && index < weights.size(0), op, ": index ", index, " outside ", what, " ",
               weights.describe());
}
}  // namespace

Tensor add(const Tensor& a, const Tensor& b) {
  check_binary(a, b, "add", "a", "b");
  PROFILE_OP("add", 0, 2 * a.nbytes() + b.nbytes(), a.device(), DType::F32);  // reads a, b; writes a's dtype
  if (a.device() == Device::CPU) return cpu::add(a, b);
  CUDA_ONLY(return cuda::add(a, b));
}

void add_inplace(Tensor& a, const Tensor& b) {
  check_binary(a, b, "add_inplace", "a", "b");
  PROFILE_OP("add_inplace", 0, 2 * a.nbytes() + b.nbytes(), a.device(), DType::F32);  // reads a, b; writes a
  if (a.device() == Device::CPU) return cpu::add_inplace(a, b);
  CUDA_ONLY(cuda::add_inplace(a, b));
}

Tensor skip_scale_add_forward(const Tensor& x, const Tensor& weights, int index, const Tensor& skip) {
  const char* op = "skip_scale_add_forward";
  check_binary(x, skip, op, "x", "skip");
  check_weights(weights, index, x.device(), op, "weights");
  // Reads x, skip (and one weight); writes y in x's dtype.
  PROFILE_OP("skip_scale_add_forward", 0, 2 * x.nbytes() + skip.nbytes(), x.device(), DType::F32);
  if (x.device() == Device::CPU) return cpu::skip_scale_add_forward(x, weights, index, skip);
  CUDA_ONLY(return cuda::skip_scale_add_forward(x, weights, index, skip));
}

void skip_scale_add_backward(const Tensor& grad_y, const Tensor& x, const Tensor& weights, int index,
                             Tensor& grad_x, Tensor& grad_weights) {
  const char* op = "skip_scale_add_backward";
  check_binary(x, grad_y, op, "x", "grad_y");
  check_weights(weights, index, x.device(), op, "weights");
  check_weights(grad_weights, index, x.device(), op, "grad_weights");
  detail::check_shape(grad_weights, weights.shape(), op, "grad_weights");
  // Reads grad_y, x; writes grad_x in x's dtype (the one weight's gradient is negligible).
  PROFILE_OP("skip_scale_add_backward", 0, grad_y.nbytes() + 2 * x.nbytes(), x.device(), DType::F32);
  if (x.device() == Device::CPU)
    return cpu::skip_scale_add_backward(grad_y, x, weights, index, grad_x, grad_weights);
  CUDA_ONLY(cuda::skip_scale_add_backward(grad_y, x, weights, index, grad_x, grad_weights));
}

Tensor scale(const Tensor& x, float s) {
  IFLAME_CHECK(x.defined(), "scale: x: undefined tensor");
  detail::check_activation(x, "scale", "x", x.device());
  PROFILE_OP("scale", 0, 2 * x.nbytes(), x.device(), DType::F32);  // reads x, writes y
  if (x.device() == Device::CPU) return cpu::scale(x, s);
  CUDA_ONLY(return cuda::scale(x, s));
}

}  // namespace iflame::ops
