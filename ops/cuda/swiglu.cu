// cuda/swiglu.cu: the SwiGLU gate on the GPU, one thread per element (grid-stride),
// f32 arithmetic with expf (not __expf) so it agrees with the CPU reference.
#include "ops/cuda/elem_util.cuh"
#include "ops/swiglu.h"

namespace iflame::ops::cuda {

namespace {

__device__ __forceinline__ float sigmoid(float v) { return 1.0f / (1.0f + expf(-v)); }

template <typename T>
__global__ void swiglu_forward_kernel(const T* __restrict__ a, const T* __restrict__ b, T* __restrict__ y,
                                      long long n) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
       i += (long long)gridDim.x * blockDim.x) {
    const float av = load_f32(a, i);
    store_f32(y, i, av * sigmoid(av) * load_f32(b, i));
  }
}

template <typename T>
__global__ void swiglu_backward_kernel(const T* __restrict__ grad_y, const T* __restrict__ a,
                                       const T* __restrict__ b, T* __restrict__ grad_a, T* __restrict__ grad_b,
                                       long long n) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
       i += (long long)gridDim.x * blockDim.x) {
    const float g = load_f32(grad_y, i), av = load_f32(a, i), bv = load_f32(b, i);
    const float s = sigmoid(av);
    store_f32(grad_a, i, g * bv * s * (1.0f + av * (1.0f - s)));
    store_f32(grad_b, i, g * av * s);
  }
}

}  // namespace

Tensor swiglu_forward(const Tensor& a, const Tensor& b) {
  const long long n = a.numel();
  Tensor y = Tensor::empty(a.shape(), a.dtype(), Device::CUDA);
  if (n == 0) return y;
  IFLAME_DISPATCH_ACT(a.dtype(), "swiglu_forward", {
    swiglu_forward_kernel<T><<<grid_stride_blocks(n, 256), 256, 0, cuda_stream()>>>(a.data<T>(), b.data<T>(),
                                                                                    y.data<T>(), n);
  });
  CUDA_CHECK_LAUNCH();
  return y;
}

void swiglu_backward(const Tensor& grad_y, const Tensor& a, const Tensor& b, Tensor& grad_a, Tensor& grad_b) {
  const long long n = a.numel();
  grad_a = Tensor::empty(a.shape(), a.dtype(), Device::CUDA);
  grad_b = Tensor::empty(b.shape(), b.dtype(), Device::CUDA);
  if (n == 0) return;
  IFLAME_DISPATCH_ACT(a.dtype(), "swiglu_backward", {
    swiglu_backward_kernel<T><<<grid_stride_blocks(n, 256), 256, 0, cuda_stream()>>>(
        grad_y.data<T>(), a.data<T>(), b.data<T>(), grad_a.data<T>(), grad_b.data<T>(), n);
  });
  CUDA_CHECK_LAUNCH();
}

}  // namespace iflame::ops::cuda
