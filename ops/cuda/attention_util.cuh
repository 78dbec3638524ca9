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
