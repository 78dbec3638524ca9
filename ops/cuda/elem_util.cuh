// elem_util.cuh: small device helpers shared by the element-wise, norm and loss
// kernels of ops/cuda: reading and writing activations stored as f32 or bf16
// (arithmetic is always f32), warp-shuffle reductions, and the launch-time
// choice between the two storage types.
#pragma once
#include <cuda_runtime.h>

#include <type_traits>

#include "core/bf16.h"
#include "core/cuda_check.h"
#include "core/tensor.h"

namespace iflame::ops::cuda {

// Activation storage <-> f32 arithmetic.
__device__ __forceinline__ float load_f32(const float* p, long long i) { return p[i]; }
__device__ __forceinline__ float load_f32(const bf16* p, long long i) { return bf16_to_float(p[i]); }
__device__ __forceinline__ void store_f32(float* p, long long i, float v) { p[i] = v; }
__device__ __forceinline__ void store_f32(bf16* p, long long i, float v) { p[i] = float_to_bf16(v); }

// A value as storing it through a T* would keep it (bf16: rounded).
__device__ __forceinline__ float as_stored(float v, const float*) { return v; }
__device__ __forceinline__ float as_stored(float v, const bf16*) { return round_to_bf16(v); }

// V consecutive elements p[i .. i + V) as floats, and back: one 16-byte access
// for 8 bf16 or 4 f32 (an 8-byte store for 4 bf16), element by element for any
// other V. The vector forms need p + i aligned to the access.
template <int V, typename T>
__device__ __forceinline__ void load_vec(const T* p, long long i, float* out) {
  if constexpr (V == 8 && std::is_same_v<T, bf16>) {
    unpack_bf16x8(*reinterpret_cast<const uint4*>(p + i), out);
  } else if constexpr (V == 4 && std::is_same_v<T, float>) {
    const float4 w = *reinterpret_cast<const float4*>(p + i);
    out[0] = w.x, out[1] = w.y, out[2] = w.z, out[3] = w.w;
  } else {
#pragma unroll
    for (int k = 0; k < V; k++) out[k] = load_f32(p, i + k);
  }
}
template <int V, typename T>
__device__ __forceinline__ void store_vec(T* p, long long i, const float* v) {
  if constexpr (V == 8 && std::is_same_v<T, bf16>) {
    *reinterpret_cast<uint4*>(p + i) = pack_bf16x8(v);
  } else if constexpr (V == 4 && std::is_same_v<T, bf16>) {
    *reinterpret_cast<uint2*>(p + i) = pack_bf16x4(v);
  } else if constexpr (V == 4 && std::is_same_v<T, float>) {
    *reinterpret_cast<float4*>(p + i) = make_float4(v[0], v[1], v[2], v[3]);
  } else {
#pragma unroll
    for (int k = 0; k < V; k++) store_f32(p, i + k, v[k]);
  }
}

// The logistic function, as every gate computes it (swiglu.cu, the small-batch
// products' fused gate): the same expression, so the same bits, everywhere.
__device__ __forceinline__ float sigmoid(float v) { return 1.0f / (1.0f + expf(-v)); }

__device__ __forceinline__ float warp_sum(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}
__device__ __forceinline__ double warp_sum(double v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

// Sum of one double per thread over a whole block (blockDim.x a multiple of 32,
// at most 1024). Every thread gets the total. Uses 32 doubles of shared memory.
__device__ __forceinline__ double block_sum(double v) {
  __shared__ double warp_totals[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();  // warp_totals may still be read by a previous call
  if (lane == 0) warp_totals[warp] = v;
  __syncthreads();
  double total = 0;
  for (int w = 0; w < warps; w++) total += warp_totals[w];
  return total;
}

// Grid size for a grid-stride loop over n items: enough blocks to fill the GPU, no more.
inline unsigned grid_stride_blocks(long long n, int threads, unsigned cap = 4096) {
  unsigned b = blocks_for(n, threads);
  return b < cap ? b : cap;
}

}  // namespace iflame::ops::cuda

// Runs `body` with `T` bound to the C++ storage type (float or bf16) of an
// activation dtype: IFLAME_DISPATCH_ACT(x.dtype(), "rms_norm", { kernel<T><<<...>>>(...); })
#define IFLAME_DISPATCH_ACT(dtype, opname, ...)                                          \
  do {                                                                                   \
    if ((dtype) == ::iflame::DType::F32) {                                               \
      using T = float;                                                                   \
      __VA_ARGS__;                                                                       \
    } else if ((dtype) == ::iflame::DType::BF16) {                                       \
      using T = ::iflame::bf16;                                                          \
      __VA_ARGS__;                                                                       \
    } else {                                                                             \
      IFLAME_FAIL(opname, ": activations must be f32 or bf16, got ", dtype_name(dtype)); \
    }                                                                                    \
  } while (0)
