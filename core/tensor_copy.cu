// tensor_copy.cu: strided copy with dtype conversion, fill, host<->device copies.
#include "core/cuda_check.h"
#include "core/tensor_copy.h"

namespace iflame {

namespace {
constexpr int kMaxDims = 8;
struct StridedLayout {
  int ndim;
  long long shape[kMaxDims];
  long long src_stride[kMaxDims];
  long long dst_stride[kMaxDims];
};

__device__ __forceinline__ float load_any(const void* p, int dt, long long i) {
  if (dt == 0) return static_cast<const float*>(p)[i];
  if (dt == 1) return bf16_to_float(static_cast<const bf16*>(p)[i]);
  return static_cast<float>(static_cast<const int*>(p)[i]);
}

__global__ void copy_convert_kernel(void* dst, int dst_dt, const void* src, int src_dt,
                                    StridedLayout layout, long long n) {
  for (long long lin = blockIdx.x * (long long)blockDim.x + threadIdx.x; lin < n;
       lin += (long long)gridDim.x * blockDim.x) {
    long long rem = lin, so = 0, dof = 0;
    for (int d = layout.ndim - 1; d >= 0; d--) {
      long long i = rem % layout.shape[d];
      rem /= layout.shape[d];
      so += i * layout.src_stride[d];
      dof += i * layout.dst_stride[d];
    }
    if (src_dt == 2 && dst_dt == 2) {  // integers copy exactly
      static_cast<int*>(dst)[dof] = static_cast<const int*>(src)[so];
      continue;
    }
    float v = load_any(src, src_dt, so);
    if (dst_dt == 0) static_cast<float*>(dst)[dof] = v;
    else if (dst_dt == 1) static_cast<bf16*>(dst)[dof] = float_to_bf16(v);
    else static_cast<int*>(dst)[dof] = static_cast<int>(v);
  }
}

// Contiguous f32 <-> bf16 (the casts around bf16 products and activations):
// 8 elements per thread and iteration, as 16-byte (f32 side: two 16-byte)
// loads and stores, the same rounding as float_to_bf16. `n8` counts groups of
// 8; the tail (n % 8 elements) is done by the first threads of the grid.
__global__ void f32_to_bf16_kernel(const float* __restrict__ src, bf16* __restrict__ dst, long long n8,
                                   long long n) {
  const long long stride = (long long)gridDim.x * blockDim.x;
  const long long first = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  for (long long g = first; g < n8; g += stride) {
    const float4 a = reinterpret_cast<const float4*>(src)[2 * g];
    const float4 b = reinterpret_cast<const float4*>(src)[2 * g + 1];
    const float v[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
    reinterpret_cast<uint4*>(dst)[g] = pack_bf16x8(v);
  }
  for (long long i = 8 * n8 + first; i < n; i += stride) dst[i] = float_to_bf16(src[i]);
}

__global__ void bf16_to_f32_kernel(const bf16* __restrict__ src, float* __restrict__ dst, long long n8,
                                   long long n) {
  const long long stride = (long long)gridDim.x * blockDim.x;
  const long long first = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  for (long long g = first; g < n8; g += stride) {
    float v[8];
    unpack_bf16x8(reinterpret_cast<const uint4*>(src)[g], v);
    reinterpret_cast<float4*>(dst)[2 * g] = make_float4(v[0], v[1], v[2], v[3]);
    reinterpret_cast<float4*>(dst)[2 * g + 1] = make_float4(v[4], v[5], v[6], v[7]);
  }
  for (long long i = 8 * n8 + first; i < n; i += stride) dst[i] = bf16_to_float(src[i]);
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

template <typename T>
__global__ void fill_kernel(T* p, T value, long long n) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
       i += (long long)gridDim.x * blockDim.x)
    p[i] = value;
}

int dtype_code(DType t) { return t == DType::F32 ? 0 : t == DType::BF16 ? 1 : 2; }
}  // namespace

void cuda_copy_convert(Tensor& dst, const Tensor& src) {
  if (dst.is_contiguous() && src.is_contiguous() && dst.dtype() == src.dtype()) {
    CUDA_CHECK(cudaMemcpyAsync(dst.raw_data(), src.raw_data(), src.nbytes(),
                               cudaMemcpyDeviceToDevice, cuda_stream()));
    return;
  }
  const bool contiguous = dst.is_contiguous() && src.is_contiguous() && aligned16(dst.raw_data()) &&
                          aligned16(src.raw_data());
  const long long n = src.numel(), n8 = n / 8;
  const unsigned blocks = blocks_for(n8 > 0 ? n8 : n, 256);
  if (contiguous && src.dtype() == DType::F32 && dst.dtype() == DType::BF16) {
    f32_to_bf16_kernel<<<blocks, 256, 0, cuda_stream()>>>(src.data<float>(), dst.data<bf16>(), n8, n);
    CUDA_CHECK_LAUNCH();
    return;
  }
  if (contiguous && src.dtype() == DType::BF16 && dst.dtype() == DType::F32) {
    bf16_to_f32_kernel<<<blocks, 256, 0, cuda_stream()>>>(src.data<bf16>(), dst.data<float>(), n8, n);
    CUDA_CHECK_LAUNCH();
    return;
  }
  IFLAME_CHECK(src.ndim() <= kMaxDims, "copy of a tensor with more than ", kMaxDims, " dims");
  StridedLayout layout{};
  layout.ndim = src.ndim();
  for (int d = 0; d < src.ndim(); d++) {
    layout.shape[d] = src.shape()[d];
    layout.src_stride[d] = src.strides()[d];
    layout.dst_stride[d] = dst.strides()[d];
  }
  copy_convert_kernel<<<blocks_for(n, 256), 256, 0, cuda_stream()>>>(
      dst.raw_data(), dtype_code(dst.dtype()), src.raw_data(), dtype_code(src.dtype()), layout, n);
  CUDA_CHECK_LAUNCH();
}

void cuda_fill(Tensor& t, float value) {
  long long n = t.numel();
  unsigned blocks = blocks_for(n, 256);
  switch (t.dtype()) {
    case DType::F32:
      fill_kernel<<<blocks, 256, 0, cuda_stream()>>>(t.data<float>(), value, n);
      break;
    case DType::BF16:
      fill_kernel<<<blocks, 256, 0, cuda_stream()>>>(t.data<bf16>(), float_to_bf16(value), n);
      break;
    case DType::I32:
      fill_kernel<<<blocks, 256, 0, cuda_stream()>>>(t.data<int32_t>(), static_cast<int32_t>(value), n);
      break;
  }
  CUDA_CHECK_LAUNCH();
}

void cuda_memcpy_to_device(void* dst, const void* src, size_t bytes) {
  CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, cuda_stream()));
  CUDA_CHECK(cudaStreamSynchronize(cuda_stream()));  // src may be freed by the caller right after
}

void cuda_memcpy_to_host(void* dst, const void* src, size_t bytes) {
  CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, cuda_stream()));
  CUDA_CHECK(cudaStreamSynchronize(cuda_stream()));
}

}  // namespace iflame
