// attention_util.cuh: small device helpers shared by the attention kernels
// (internal to ops/cuda/): loading f32 or bf16 storage as float, storing back,
// and the head-dimension constant the kernels are specialised to.
#pragma once
#include <cuda_runtime.h>

#include "core/bf16.h"

namespace iflame::ops::cuda::attention {

// The model's head dimension; the kernels keep a row of it in registers.
constexpr int kHeadDim = 32;

__device__ __forceinline__ float load_float(const float* p) { return *p; }
__device__ __forceinline__ float load_float(const bf16* p) { return bf16_to_float(*p); }
__device__ __forceinline__ void store_float(float* p, float x) { *p = x; }
__device__ __forceinline__ void store_float(bf16* p, float x) { *p = float_to_bf16(x); }

// Cached decoding's softmax attention, one query against rows of keys and
// values, as an online softmax in log2 units (the query is pre-scaled by
// scale * log2 e): each thread folds its rows into a running (m, l, acc) with
// online_softmax_row(), then the block merges them, each thread weighing its
// share by merge_weight(). The cached-attention kernel (cached_attention.cu) and
// the persistent decoding step (persistent_decode.cu) both run these, so the two
// sum in the same order.
__device__ __forceinline__ void online_softmax_row(const float (&q)[kHeadDim], const float (&k)[kHeadDim],
                                                   const float (&v)[kHeadDim], float& m, float& l,
                                                   float (&acc)[kHeadDim]) {
  float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
#pragma unroll
  for (int d = 0; d < kHeadDim; d += 4) {
    s0 = fmaf(q[d + 0], k[d + 0], s0);
    s1 = fmaf(q[d + 1], k[d + 1], s1);
    s2 = fmaf(q[d + 2], k[d + 2], s2);
    s3 = fmaf(q[d + 3], k[d + 3], s3);
  }
  const float s = (s0 + s1) + (s2 + s3);  // log2 units
  const float new_m = fmaxf(m, s);
  const float correction = exp2f(m - new_m);  // 0 on the first row
  const float p = exp2f(s - new_m);
  l = l * correction + p;
#pragma unroll
  for (int d = 0; d < kHeadDim; d++) acc[d] = fmaf(p, v[d], acc[d] * correction);
  m = new_m;
}

// A thread's weight in the block's merge: exp2(m - M) with M (returned too) the
// largest of the block's `threads` running maxima in part_m (shared memory,
// written and synchronised by the caller); 0 for a thread that saw no rows
// (m = -inf), and so for every thread when none of the block did (M = -inf).
__device__ __forceinline__ float merge_weight(const float* part_m, int threads, float m, float& M) {
  M = -INFINITY;
  for (int i = 0; i < threads; i++) M = fmaxf(M, part_m[i]);
  return (m == -INFINITY) ? 0.0f : exp2f(m - M);
}

// Decoding's linear attention, one token of one head on one warp (lane = state
// column d, `column` = that column of S as loaded by the caller): S[e][d] =
// decay * S[e][d] + k_e * v_d, rounded like the CPU reference (no fused
// multiply-add), written back, and o_d = sum_e q_e S[e][d] returned, summed in
// double (decoding applies this for thousands of tokens, and the RMSNorm after
// linear attention magnifies the error of a small o). q_mine / k_mine are lane
// d's q and k elements. Shared by linear_attention.cu's step kernel and the
// persistent decoding step.
__device__ __forceinline__ double linear_state_step(float* S, const float (&column)[kHeadDim], float decay,
                                                    float q_mine, float k_mine, float v_d, int lane) {
  double out = 0.0;
#pragma unroll
  for (int e = 0; e < kHeadDim; e++) {
    const float k_e = __shfl_sync(0xffffffffu, k_mine, e);
    const float q_e = __shfl_sync(0xffffffffu, q_mine, e);
    const float s = __fadd_rn(__fmul_rn(decay, column[e]), __fmul_rn(k_e, v_d));
    S[e * kHeadDim + lane] = s;
    out += static_cast<double>(q_e) * static_cast<double>(s);
  }
  return out;
}

// The backward's Dvec [B, H, Tq] = rowsum(dO * O) over rows of [B, Tq, H,
// kHeadDim] tensors, one thread per (b, t, h) row: row_dot(r) is the dot product
// of row r (element r * kHeadDim on) of dO and O.
template <typename RowDot>
__device__ __forceinline__ void attention_row_dots(int B, int Tq, int H, float* __restrict__ dvec, RowDot row_dot) {
  const long long rows = (long long)B * Tq * H;
  for (long long r = blockIdx.x * (long long)blockDim.x + threadIdx.x; r < rows;
       r += (long long)gridDim.x * blockDim.x) {
    const int h = r % H;
    const long long bt = r / H;
    const int t = bt % Tq, b = bt / Tq;
    dvec[((long long)b * H + h) * Tq + t] = row_dot(r);
  }
}

}  // namespace iflame::ops::cuda::attention

#include <cstdint>
#include <initializer_list>

#include "core/error.h"
#include "core/tensor.h"

namespace iflame::ops::cuda::attention {

// Calls fn(T{}) with T the storage type of `dtype` (float or bf16), so a launcher
// can instantiate its kernel for both: with_storage_type(q.dtype(), [&](auto tag) {
// using T = decltype(tag); kernel<T><<<...>>>(q.data<T>(), ...); });
template <typename Fn>
void with_storage_type(DType dtype, const char* op, Fn&& fn) {
  if (dtype == DType::F32) {
    fn(float{});
  } else if (dtype == DType::BF16) {
    fn(bf16{});
  } else {
    IFLAME_FAIL(op, ": the CUDA kernel takes f32 or bf16 activations, got ", dtype_name(dtype));
  }
}

// Whether the tensor-core kernels can take these tensors (bf16 storage, head dim
// 32, 16-byte aligned for cp.async and vector stores) and their kernel choice
// (ops/kernel_choices.h) is on (off, bf16 goes to the f32-FMA kernels, to
// compare the two).
inline bool tensor_core_usable(bool chosen, std::initializer_list<const Tensor*> tensors) {
  if (!chosen) return false;
  for (const Tensor* t : tensors) {
    if (t->dtype() != DType::BF16 || t->size(-1) != kHeadDim) return false;
    if (reinterpret_cast<uintptr_t>(t->raw_data()) % 16 != 0) return false;
  }
  return true;
}

// The softmax kernels' grid: B*H blocks in y (at most 65535), positions of k
// (q and k [B, T, H, D]) counted in int.
inline void check_attention_grid(const char* op, const Tensor& q, const Tensor& k) {
  IFLAME_CHECK(q.size(0) * q.size(2) <= 65535, op, ": B*H must be at most 65535 (grid rows), got ",
               q.describe());
  IFLAME_CHECK(k.size(1) < (1LL << 30), op, ": sequence too long: ", k.describe());
}

// The kernels keep head rows in registers and are written for D == 32.
inline void check_head_dim(const char* op, const Tensor& t) {
  IFLAME_CHECK(t.size(-1) == kHeadDim, op, ": the CUDA kernel is specialised to head dim ",
               kHeadDim, ", got ", t.describe(), " (the CPU reference takes any head dim)");
}

}  // namespace iflame::ops::cuda::attention
