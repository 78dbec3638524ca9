// linear_attention.cpp: entry points of decayed linear attention: check the
// arguments, then run the CPU reference or the CUDA kernels by device.
#include "ops/linear_attention.h"

#include <cmath>

#include "core/profiler.h"
#include "ops/attention_checks.h"
#include "ops/dispatch.h"

namespace iflame::ops {

using detail::check_activation;
using detail::check_shape;

namespace {
void check_slopes(const char* op, const std::vector<float>& slopes, int64_t num_heads) {
  IFLAME_CHECK(static_cast<int64_t>(slopes.size()) == num_heads, op, ": need one slope per head (",
               num_heads, "), got ", slopes.size());
  for (size_t h = 0; h < slopes.size(); h++)
    IFLAME_CHECK(std::isfinite(slopes[h]) && slopes[h] >= 0, op, ": slope ", h,
                 " must be finite and >= 0, got ", slopes[h]);
}

// q, k, v all [B, T, H, D], same dtype and device, T >= 1.
void check_qkv(const char* op, const Tensor& q, const Tensor& k, const Tensor& v,
               const std::vector<float>& slopes) {
  check_activation(op, "q", q, 4);
  check_activation(op, "k", k, 4, &q);
  check_activation(op, "v", v, 4, &q);
  check_shape(op, "k", k, q.shape());
  check_shape(op, "v", v, q.shape());
  IFLAME_CHECK(q.size(1) >= 1, op, ": need at least one position, got q ", q.describe());
  check_slopes(op, slopes, q.size(2));
  if (!q.is_cuda()) detail::check_cpu_f32(op, "q", q);
}

// B*T*H*D^2 of q [B, T, H, D] (or B*H*D^2 of q [B, H, D]). FLOPs are counted as
// the recurrence does the work: per position and head, each D x D outer
// product or vector-matrix product is 2*D^2 FLOPs. (The chunked kernel also
// does intra-chunk products; the floor is the recurrence's count.)
double positions_d2(const Tensor& q) { return double(q.numel()) * q.size(-1); }
}  // namespace

Tensor linear_attention_forward(const Tensor& q, const Tensor& k, const Tensor& v,
                                const std::vector<float>& slopes) {
  check_qkv("linear_attention_forward", q, k, v, slopes);
  // FLOPs: state update S += k^T v and o = q S (2 products); bytes: reads q, k, v, writes o.
  PROFILE_OP("linear_attention_forward", 2 * 2 * positions_d2(q), 4 * q.nbytes(), q.device(), q.dtype());
  if (q.is_cuda()) {
    CUDA_ONLY(return cuda::linear_attention_forward(q, k, v, slopes));
  }
  return cpu::linear_attention_forward(q, k, v, slopes);
}

void linear_attention_backward(const Tensor& grad_o, const Tensor& q, const Tensor& k,
                               const Tensor& v, const std::vector<float>& slopes, Tensor& grad_q,
                               Tensor& grad_k, Tensor& grad_v) {
  const char* op = "linear_attention_backward";
  check_qkv(op, q, k, v, slopes);
  check_activation(op, "grad_o", grad_o, 4, &q);
  check_shape(op, "grad_o", grad_o, q.shape());
  // FLOPs: 5 products (forward state recomputed, dq = do S^T, reverse state
  // R += q^T do, dk = v R^T, dv = k R); bytes: reads q, k, v, grad_o, writes grad_q, grad_k, grad_v.
  PROFILE_OP("linear_attention_backward", 5 * 2 * positions_d2(q), 7 * q.nbytes(), q.device(), q.dtype());
  if (q.is_cuda()) {
    CUDA_ONLY(cuda::linear_attention_backward(grad_o, q, k, v, slopes, grad_q, grad_k, grad_v));
    return;
  }
  cpu::linear_attention_backward(grad_o, q, k, v, slopes, grad_q, grad_k, grad_v);
}

Tensor linear_attention_step(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& state,
                             const std::vector<float>& slopes) {
  const char* op = "linear_attention_step";
  check_activation(op, "q", q, 3);
  check_activation(op, "k", k, 3, &q);
  check_activation(op, "v", v, 3, &q);
  check_shape(op, "k", k, q.shape());
  check_shape(op, "v", v, q.shape());
  check_tensor(state, "linear_attention_step: state", DType::F32, q.device());
  check_shape(op, "state", state, {q.size(0), q.size(1), q.size(2), q.size(2)});
  check_slopes(op, slopes, q.size(1));
  // FLOPs: S += k^T v and o = q S; bytes: reads q, k, v, writes o, reads and writes the f32 state.
  PROFILE_OP("linear_attention_step", 2 * 2 * positions_d2(q), 4 * q.nbytes() + 2 * state.nbytes(), q.device(),
             q.dtype());
  if (q.is_cuda()) {
    CUDA_ONLY(return cuda::linear_attention_step(q, k, v, state, slopes));
  }
  detail::check_cpu_f32(op, "q", q);
  return cpu::linear_attention_step(q, k, v, state, slopes);
}

}  // namespace iflame::ops
