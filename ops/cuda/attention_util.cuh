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

#include <cstdint>
#include <cstdlib>
#include <cstring>
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
// 32, 16-byte aligned for cp.async and vector stores) and the environment
// variable `switch_name` leaves them on (set to 0 it sends bf16 to the f32-FMA
// kernels, to compare the two).
inline bool tensor_core_usable(const char* switch_name, std::initializer_list<const Tensor*> tensors) {
  const char* e = std::getenv(switch_name);
  if (e && std::strcmp(e, "0") == 0) return false;
  for (const Tensor* t : tensors) {
    if (t->dtype() != DType::BF16 || t->size(-1) != kHeadDim) return false;
    if (reinterpret_cast<uintptr_t>(t->raw_data()) % 16 != 0) return false;
  }
  return true;
}

// The kernels keep head rows in registers and are written for D == 32.
inline void check_head_dim(const char* op, const Tensor& t) {
  IFLAME_CHECK(t.size(-1) == kHeadDim, op, ": the CUDA kernel is specialised to head dim ",
               kHeadDim, ", got ", t.describe(), " (the CPU reference takes any head dim)");
}

}  // namespace iflame::ops::cuda::attention
