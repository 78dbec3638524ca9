// causal_attention.cpp: entry points of causal softmax attention: check the
// arguments, then run the CPU reference or the CUDA kernels by device.
#include "ops/causal_attention.h"

#include "core/profiler.h"
#include "ops/attention_checks.h"
#include "ops/dispatch.h"

namespace iflame::ops {

using detail::check_activation;
using detail::check_shape;

namespace {
// q [B, Tq, H, D], k and v [B, Tk, H, D] with Tk >= Tq >= 1.
void check_qkv(const char* op, const Tensor& q, const Tensor& k, const Tensor& v) {
  check_activation(op, "q", q, 4);
  check_activation(op, "k", k, 4, &q);
  check_activation(op, "v", v, 4, &q);
  check_shape(op, "v", v, k.shape());
  IFLAME_CHECK(k.size(0) == q.size(0) && k.size(2) == q.size(2) && k.size(3) == q.size(3), op,
               ": k must be [B, Tk, H, D] with q's B, H, D; q is ", q.describe(), ", k is ",
               k.describe());
  IFLAME_CHECK(q.size(1) >= 1 && k.size(1) >= q.size(1), op,
               ": need 1 <= Tq <= Tk (queries are the last Tq positions); q is ", q.describe(),
               ", k is ", k.describe());
  if (!q.is_cuda()) detail::check_cpu_f32(op, "q", q);
}

// Query-key pairs the causal mask keeps, per batch and head: query i of the Tq
// (the last Tq of Tk positions) sees Tk - Tq + i + 1 keys, Tq*Tk - Tq*(Tq-1)/2 in all.
double causal_pairs(const Tensor& q, const Tensor& k) {
  const double Tq = double(q.size(1)), Tk = double(k.size(1));
  return Tq * Tk - Tq * (Tq - 1) / 2;
}
// B*H*D: the FLOPs of one product over the kept pairs are 2 * B*H*D * pairs.
double bhd(const Tensor& q) { return double(q.size(0)) * q.size(2) * q.size(3); }
}  // namespace

Tensor causal_attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, float scale,
                                Tensor* lse) {
  check_qkv("causal_attention_forward", q, k, v);
  // FLOPs: two products (S = Q K^T, O = P V) over the kept pairs, 2 each per
  // multiply-add. Bytes: reads q, k, v; writes o and lse (f32 [B, H, Tq]) if asked.
  PROFILE_OP("causal_attention_forward", 2 * 2 * bhd(q) * causal_pairs(q, k),
             2 * q.nbytes() + k.nbytes() + v.nbytes() + (lse ? 4 * q.numel() / q.size(3) : 0), q.device(),
             q.dtype());
  if (q.is_cuda()) {
    CUDA_ONLY(return cuda::causal_attention_forward(q, k, v, scale, lse));
  }
  return cpu::causal_attention_forward(q, k, v, scale, lse);
}

void causal_attention_backward(const Tensor& grad_o, const Tensor& q, const Tensor& k,
                               const Tensor& v, const Tensor& o, const Tensor& lse, float scale,
                               Tensor& grad_q, Tensor& grad_k, Tensor& grad_v) {
  const char* op = "causal_attention_backward";
  check_qkv(op, q, k, v);
  check_activation(op, "o", o, 4, &q);
  check_shape(op, "o", o, q.shape());
  check_activation(op, "grad_o", grad_o, 4, &q);
  check_shape(op, "grad_o", grad_o, q.shape());
  check_tensor(lse, "causal_attention_backward: lse", DType::F32, q.device());
  check_shape(op, "lse", lse, {q.size(0), q.size(2), q.size(1)});
  // FLOPs: five products over the kept pairs (S = Q K^T recomputed, dP = dO V^T,
  // dV = P^T dO, dQ = dS K, dK = dS^T Q), 2.5x the forward. Bytes: reads q, k, v,
  // o, grad_o, lse; writes grad_q, grad_k, grad_v (q-shaped: 4, k-shaped: 4).
  PROFILE_OP("causal_attention_backward", 5 * 2 * bhd(q) * causal_pairs(q, k),
             4 * q.nbytes() + 4 * k.nbytes() + lse.nbytes(), q.device(), q.dtype());
  if (q.is_cuda()) {
    CUDA_ONLY(cuda::causal_attention_backward(grad_o, q, k, v, o, lse, scale, grad_q, grad_k,
                                              grad_v));
    return;
  }
  cpu::causal_attention_backward(grad_o, q, k, v, o, lse, scale, grad_q, grad_k, grad_v);
}

}  // namespace iflame::ops
