// rms_norm.cpp: argument checks and device dispatch for RMSNorm.
#include "ops/rms_norm.h"

#include "core/profiler.h"
#include "ops/dispatch.h"
#include "ops/elem_checks.h"
#include "ops/elementwise.h"

namespace iflame::ops {

namespace {
void check_weight_for(const Tensor& x, const Tensor& weight, const char* op, const char* what) {
  detail::check_exact(weight, op, what, DType::F32, x.device());
  IFLAME_CHECK(x.ndim() >= 1 && x.size(-1) > 0, op, ": x: expected [..., d] with d > 0, got ", x.describe());
  detail::check_shape(weight, {x.size(-1)}, op, what);
}
}  // namespace

Tensor rms_norm_forward(const Tensor& x, const Tensor& weight, float eps, Tensor& inv_rms) {
  IFLAME_CHECK(x.defined(), "rms_norm_forward: x: undefined tensor");
  return rms_norm_forward(x, weight, eps, inv_rms, x.dtype());
}

Tensor rms_norm_forward(const Tensor& x, const Tensor& weight, float eps, Tensor& inv_rms, DType out_dtype) {
  const char* op = "rms_norm_forward";
  IFLAME_CHECK(x.defined(), op, ": x: undefined tensor");
  detail::check_activation(x, op, "x", x.device());
  check_weight_for(x, weight, op, "weight");
  IFLAME_CHECK(eps >= 0, op, ": eps must be >= 0, got ", eps);
  IFLAME_CHECK(out_dtype == DType::F32 || (out_dtype == DType::BF16 && x.is_cuda()), op,
               ": the output must be f32 (or bf16 on the GPU), got ", dtype_name(out_dtype), " for x ", x.describe());
  // Reads x and weight, writes y (out_dtype) and inv_rms (f32 per row).
  PROFILE_OP("rms_norm_forward", 0,
             x.nbytes() + x.numel() * dtype_size(out_dtype) + weight.nbytes() + 4 * (x.numel() / x.size(-1)),
             x.device(), DType::F32);
  if (x.device() == Device::CPU) return cpu::rms_norm_forward(x, weight, eps, inv_rms);
  CUDA_ONLY(return cuda::rms_norm_forward(x, weight, eps, inv_rms, out_dtype));
}

Tensor add_rms_norm_forward(const Tensor& a, const Tensor& b, const Tensor& weight, float eps, Tensor& sum,
                            Tensor& inv_rms, DType out_dtype) {
  const char* op = "add_rms_norm_forward";
  IFLAME_CHECK(a.defined(), op, ": a: undefined tensor");
  detail::check_activation(a, op, "a", a.device());
  detail::check_activation(b, op, "b", a.device());
  detail::check_shape(b, a.shape(), op, "b");
  check_weight_for(a, weight, op, "weight");
  IFLAME_CHECK(eps >= 0, op, ": eps must be >= 0, got ", eps);
  IFLAME_CHECK(out_dtype == DType::F32 || (out_dtype == DType::BF16 && a.is_cuda()), op,
               ": the output must be f32 (or bf16 on the GPU), got ", dtype_name(out_dtype), " for a ", a.describe());
  // The CPU, and rows too long for the kernel's registers: the two ops.
  if (a.device() == Device::CPU || a.size(-1) > 1024) {
    sum = add(a, b);
    return rms_norm_forward(sum, weight, eps, inv_rms, out_dtype);
  }
  // Reads a, b and weight; writes sum (a's dtype), y (out_dtype) and inv_rms.
  PROFILE_OP("add_rms_norm_forward", 0,
             2 * a.nbytes() + b.nbytes() + a.numel() * dtype_size(out_dtype) + weight.nbytes() +
                 4 * (a.numel() / a.size(-1)),
             a.device(), DType::F32);
  CUDA_ONLY(return cuda::add_rms_norm_forward(a, b, weight, eps, sum, inv_rms, out_dtype));
}

Tensor rms_norm_backward(const Tensor& grad_y, const Tensor& x, const Tensor& weight, const Tensor& inv_rms,
                         Tensor& grad_weight, Tensor* accumulate) {
  const char* op = "rms_norm_backward";
  IFLAME_CHECK(x.defined(), op, ": x: undefined tensor");
  const Device dev = x.device();
  detail::check_activation(x, op, "x", dev);
  detail::check_activation(grad_y, op, "grad_y", dev);  // its dtype may differ from x's on the GPU
  detail::check_shape(grad_y, x.shape(), op, "grad_y");
  check_weight_for(x, weight, op, "weight");
  check_weight_for(x, grad_weight, op, "grad_weight");
  detail::check_exact(inv_rms, op, "inv_rms", DType::F32, dev);
  detail::check_shape(inv_rms, {x.numel() / x.size(-1)}, op, "inv_rms");
  if (accumulate) {
    detail::check_exact(*accumulate, op, "accumulate", x.dtype(), dev);
    detail::check_shape(*accumulate, x.shape(), op, "accumulate");
  }
  // Reads grad_y, x, weight, inv_rms (and accumulate); writes grad_x; reads and writes grad_weight.
  PROFILE_OP("rms_norm_backward", 0,
             grad_y.nbytes() + (accumulate ? 3 : 2) * x.nbytes() + weight.nbytes() + inv_rms.nbytes() +
                 2 * grad_weight.nbytes(),
             dev, DType::F32);
  if (dev == Device::CPU) return cpu::rms_norm_backward(grad_y, x, weight, inv_rms, grad_weight, accumulate);
  CUDA_ONLY(return cuda::rms_norm_backward(grad_y, x, weight, inv_rms, grad_weight, accumulate));
}

}  // namespace iflame::ops
