// linear.cpp: argument checks for the dense layer and gemm, then CPU or CUDA by device.
#include "ops/linear.h"

#include <algorithm>

#include "core/profiler.h"

namespace iflame::ops {

namespace {

void check_compute(DType compute, const char* op) {
  IFLAME_CHECK(compute == DType::F32 || compute == DType::BF16, op,
               ": compute dtype must be f32 or bf16, got ", dtype_name(compute));
}

// An activation: defined, contiguous, f32 or bf16 (f32 only on the CPU).
void check_activation(const Tensor& t, const char* op, const char* what) {
  IFLAME_CHECK(t.defined(), op, ": ", what, " is undefined");
  IFLAME_CHECK(t.dtype() == DType::F32 || t.dtype() == DType::BF16, op, ": ", what,
               " must be f32 or bf16, got ", t.describe());
  IFLAME_CHECK(t.is_contiguous(), op, ": ", what, " must be contiguous, got ", t.describe());
  IFLAME_CHECK(t.ndim() >= 1, op, ": ", what, " must have at least one dim");
  IFLAME_CHECK(t.is_cuda() || t.dtype() == DType::F32, op, ": the CPU reference takes f32 only, ",
               what, " is ", t.describe());
}

// A parameter or parameter gradient: f32, contiguous, on `device`, of `shape`.
void check_param(const Tensor& t, const char* op, const char* what, Device device, const Shape& shape) {
  IFLAME_CHECK(t.defined(), op, ": ", what, " is undefined");
  IFLAME_CHECK(t.dtype() == DType::F32 && t.is_contiguous() && t.device() == device, op, ": ", what,
               " must be contiguous f32 on ", device_name(device), ", got ", t.describe());
  IFLAME_CHECK(t.shape() == shape, op, ": ", what, " must be ", shape_str(shape), ", got ",
               shape_str(t.shape()));
}

// The gradient a backward adds grad_x into (accumulate_grad_x): there, and like x.
void check_grad_x_to_add_into(const Tensor* grad_x, const Tensor& x, const char* op) {
  IFLAME_CHECK(grad_x && grad_x->defined(), op, ": accumulate_grad_x needs the gradient to add into");
  IFLAME_CHECK(grad_x->shape() == x.shape() && grad_x->dtype() == x.dtype() && grad_x->is_contiguous() &&
                   grad_x->device() == x.device(),
               op, ": the gradient to add into must be contiguous and like x (", x.describe(), "), got ",
               grad_x->describe());
}

}  // namespace

Tensor linear_forward(const Tensor& x, const Tensor& weight, const Tensor* bias, DType compute) {
  const char* op = "linear_forward";
  check_compute(compute, op);
  check_activation(x, op, "x");
  IFLAME_CHECK(weight.defined() && weight.ndim() == 2, op, ": weight must be 2-D [out, in], got ",
               weight.describe());
  if (x.is_cuda() && compute == DType::BF16 && weight.dtype() == DType::BF16) {
    // A weight already in the compute dtype (cached decoding converts once): used as is.
    IFLAME_CHECK(weight.is_contiguous() && weight.is_cuda() && weight.size(1) == x.size(-1), op,
                 ": a bf16 weight must be contiguous on the GPU with x's ", x.size(-1), " inputs, got ",
                 weight.describe());
  } else {
    check_param(weight, op, "weight", x.device(), {weight.size(0), x.size(-1)});
  }
  if (bias) check_param(*bias, op, "bias", x.device(), {weight.size(0)});
  // FLOPs: 2*rows*in*out (x.numel() = rows*in). Bytes: reads x, weight, bias; writes y [rows, out] in x's dtype.
  PROFILE_OP("linear_forward", 2.0 * x.numel() * weight.size(0),
             x.nbytes() + weight.nbytes() + (bias ? bias->nbytes() : 0) +
                 x.numel() / x.size(-1) * weight.size(0) * dtype_size(x.dtype()),
             x.device(), compute);
  if (x.is_cuda()) CUDA_ONLY(return cuda::linear_forward(x, weight, bias, compute));
  return cpu::linear_forward(x, weight, bias, compute);
}

void linear_backward(const Tensor& grad_y, const Tensor& x, const Tensor& weight, DType compute,
                     Tensor* grad_x, Tensor& grad_weight, Tensor* grad_bias, bool accumulate_grad_x) {
  const char* op = "linear_backward";
  check_compute(compute, op);
  check_activation(x, op, "x");
  check_activation(grad_y, op, "grad_y");
  IFLAME_CHECK(weight.defined() && weight.ndim() == 2, op, ": weight must be 2-D [out, in], got ",
               weight.describe());
  check_param(weight, op, "weight", x.device(), {weight.size(0), x.size(-1)});
  Shape gy_shape = x.shape();
  gy_shape.back() = weight.size(0);
  IFLAME_CHECK(grad_y.shape() == gy_shape && grad_y.device() == x.device(), op,
               ": grad_y must be ", shape_str(gy_shape), " on ", device_name(x.device()), ", got ",
               grad_y.describe());
  check_param(grad_weight, op, "grad_weight", x.device(), weight.shape());
  if (grad_bias) check_param(*grad_bias, op, "grad_bias", x.device(), {weight.size(0)});
  if (accumulate_grad_x) check_grad_x_to_add_into(grad_x, x, op);
  // FLOPs: grad_weight += grad_y^T x (2*rows*in*out), and grad_x = grad_y W (as many) when asked.
  // Bytes: reads grad_y, x; reads and writes grad_weight (and grad_bias); for grad_x also reads W, writes grad_x.
  PROFILE_OP("linear_backward", (grad_x ? 4.0 : 2.0) * x.numel() * weight.size(0),
             grad_y.nbytes() + x.nbytes() + 2 * grad_weight.nbytes() + (grad_bias ? 2 * grad_bias->nbytes() : 0) +
                 (grad_x ? weight.nbytes() + x.nbytes() : 0),
             x.device(), compute);
  if (x.is_cuda())
    CUDA_ONLY(return cuda::linear_backward(grad_y, x, weight, compute, grad_x, grad_weight, grad_bias,
                                           accumulate_grad_x));
  cpu::linear_backward(grad_y, x, weight, compute, grad_x, grad_weight, grad_bias, accumulate_grad_x);
}

Tensor linear_pair_forward(const Tensor& x, const Tensor& w1, const Tensor& b1, const Tensor& w2, const Tensor& b2,
                           int64_t padded, DType compute, Tensor& packed_weight) {
  const char* op = "linear_pair_forward";
  check_compute(compute, op);
  check_activation(x, op, "x");
  IFLAME_CHECK(w1.defined() && w1.ndim() == 2, op, ": w1 must be 2-D [H, in], got ", w1.describe());
  const int64_t hidden = w1.size(0), in = x.size(-1);
  check_param(w1, op, "w1", x.device(), {hidden, in});
  check_param(w2, op, "w2", x.device(), {hidden, in});
  check_param(b1, op, "b1", x.device(), {hidden});
  check_param(b2, op, "b2", x.device(), {hidden});
  IFLAME_CHECK(padded >= hidden, op, ": padded width ", padded, " is below the hidden width ", hidden);
  // The packed weight in the compute dtype on the GPU (converted once here), f32
  // on the CPU (whose products round their operands themselves).
  const DType wtype = x.is_cuda() ? compute : DType::F32;
  packed_weight = Tensor::zeros({2 * padded, in}, wtype, x.device());
  packed_weight.slice(0, 0, hidden).copy_from(w1);
  packed_weight.slice(0, padded, padded + hidden).copy_from(w2);
  Tensor packed_bias = Tensor::zeros({2 * padded}, DType::F32, x.device());
  packed_bias.slice(0, 0, hidden).copy_from(b1);
  packed_bias.slice(0, padded, padded + hidden).copy_from(b2);
  return linear_forward(x, packed_weight, &packed_bias, compute);
}

void linear_pair_backward(const Tensor& grad_ab, const Tensor& x, const Tensor& packed_weight, int64_t hidden,
                          DType compute, Tensor* grad_x, Tensor& grad_w1, Tensor& grad_w2, bool accumulate_grad_x) {
  const char* op = "linear_pair_backward";
  check_compute(compute, op);
  check_activation(x, op, "x");
  check_activation(grad_ab, op, "grad_ab");
  const int64_t in = x.size(-1);
  IFLAME_CHECK(packed_weight.defined() && packed_weight.ndim() == 2 && packed_weight.size(1) == in &&
                   packed_weight.size(0) % 2 == 0 && packed_weight.is_contiguous() &&
                   packed_weight.device() == x.device(),
               op, ": packed_weight must be [2P, ", in, "] beside x, got ", packed_weight.describe());
  const int64_t padded = packed_weight.size(0) / 2;
  IFLAME_CHECK(hidden > 0 && hidden <= padded, op, ": hidden width ", hidden, " outside (0, ", padded, "]");
  Shape ab_shape = x.shape();
  ab_shape.back() = 2 * padded;
  IFLAME_CHECK(grad_ab.shape() == ab_shape && grad_ab.dtype() == x.dtype(), op, ": grad_ab must be ",
               shape_str(ab_shape), " in x's dtype, got ", grad_ab.describe());
  check_param(grad_w1, op, "grad_w1", x.device(), {hidden, in});
  check_param(grad_w2, op, "grad_w2", x.device(), {hidden, in});
  if (accumulate_grad_x) check_grad_x_to_add_into(grad_x, x, op);
  // FLOPs: grad_x (2 rows 2P in) when asked, grad_w1 and grad_w2 (2 rows H in each).
  // Bytes: reads grad_ab, x (and W for grad_x); writes grad_x; reads and writes the two weight gradients.
  const double rows = double(x.numel() / std::max<int64_t>(in, 1));
  PROFILE_OP("linear_backward", (grad_x ? 4.0 * padded : 0.0) * rows * in + 4.0 * hidden * rows * in,
             grad_ab.nbytes() + x.nbytes() + 2 * (grad_w1.nbytes() + grad_w2.nbytes()) +
                 (grad_x ? packed_weight.nbytes() + x.nbytes() : 0),
             x.device(), compute);
  if (x.is_cuda())
    CUDA_ONLY(return cuda::linear_pair_backward(grad_ab, x, packed_weight, hidden, compute, grad_x, grad_w1, grad_w2,
                                                accumulate_grad_x));
  cpu::linear_pair_backward(grad_ab, x, packed_weight, hidden, compute, grad_x, grad_w1, grad_w2, accumulate_grad_x);
}

void gemm(const Tensor& a, bool transpose_a, const Tensor& b, bool transpose_b, Tensor& c,
          float alpha, float beta, DType compute) {
  const char* op = "gemm";
  check_compute(compute, op);
  IFLAME_CHECK(a.defined() && a.ndim() == 2, op, ": a must be 2-D, got ", a.describe());
  IFLAME_CHECK(b.defined() && b.ndim() == 2, op, ": b must be 2-D, got ", b.describe());
  IFLAME_CHECK(c.defined() && c.ndim() == 2, op, ": c must be 2-D, got ", c.describe());
  const Device dev = a.device();
  check_tensor(a, "gemm: a", DType::F32, dev);
  check_tensor(b, "gemm: b", DType::F32, dev);
  check_tensor(c, "gemm: c", DType::F32, dev);
  const int64_t m = transpose_a ? a.size(1) : a.size(0), k = transpose_a ? a.size(0) : a.size(1);
  const int64_t kb = transpose_b ? b.size(1) : b.size(0), n = transpose_b ? b.size(0) : b.size(1);
  IFLAME_CHECK(k == kb && c.size(0) == m && c.size(1) == n, op, ": shapes do not match: op(a) is [", m,
               ", ", k, "], op(b) is [", kb, ", ", n, "], c is ", shape_str(c.shape()));
  // FLOPs: 2*m*k*n. Bytes: reads a, b (and c when beta != 0), writes c.
  PROFILE_OP("gemm", 2.0 * m * k * n, a.nbytes() + b.nbytes() + (beta != 0.0f ? 2 : 1) * c.nbytes(), dev, compute);
  if (dev == Device::CUDA) CUDA_ONLY(return cuda::gemm(a, transpose_a, b, transpose_b, c, alpha, beta, compute));
  cpu::gemm(a, transpose_a, b, transpose_b, c, alpha, beta, compute);
}

}  // namespace iflame::ops
