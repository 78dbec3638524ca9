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

}  // namespace iflame::ops::cuda::attention

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

// The kernels keep head rows in registers and are written for D == 32.
inline void check_head_dim(const char* op, const Tensor& t) {
  IFLAME_CHECK(t.size(-1) == kHeadDim, op, ": the CUDA kernel is specialised to head dim ",
               kHeadDim, ", got ", t.describe(), " (the CPU reference takes any head dim)");
}

}  // namespace iflame::ops::cuda::attention
