// cuda/resample.cu: average pooling by 3 and repeat-3-shift-2 on the GPU.
// One thread per output element (grid-stride), consecutive threads along d, so
// every read and write is coalesced; sums in f32 in the same order as the CPU.
#include "ops/cuda/elem_util.cuh"
#include "ops/resample.h"

namespace iflame::ops::cuda {

namespace {

template <typename T>
__global__ void avg_pool3_forward_kernel(const T* __restrict__ x, T* __restrict__ y, long long n_out,
                                         long long T_in, long long S, int d) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n_out;
       i += (long long)gridDim.x * blockDim.x) {
    const int j = (int)(i % d);
    const long long bs = i / d, b = bs / S, s = bs % S;
    const long long begin = 3 * s, end = min(3 * s + 3, T_in);
    float sum = 0.0f;
    for (long long t = begin; t < end; t++) sum += load_f32(x, (b * T_in + t) * d + j);
    store_f32(y, i, sum / (float)(end - begin));
  }
}

template <typename T>
__global__ void avg_pool3_backward_kernel(const T* __restrict__ grad_y, T* __restrict__ grad_x, long long n_in,
                                          long long T_in, long long S, int d) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n_in;
       i += (long long)gridDim.x * blockDim.x) {
    const int j = (int)(i % d);
    const long long bt = i / d, b = bt / T_in, t = bt % T_in, s = t / 3;
    const float count = (float)(min(3 * s + 3, T_in) - 3 * s);
    store_f32(grad_x, i, load_f32(grad_y, (b * S + s) * d + j) / count);
  }
}

template <typename T>
__global__ void repeat3_shift2_forward_kernel(const T* __restrict__ x, T* __restrict__ y, long long n_out,
                                              long long S, long long T_out, int d) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n_out;
       i += (long long)gridDim.x * blockDim.x) {
    const int j = (int)(i % d);
    const long long bt = i / d, b = bt / T_out, t = bt % T_out;
    const long long s = (t - 2) / 3;
    const float v = (t >= 2 && s < S) ? load_f32(x, (b * S + s) * d + j) : 0.0f;
    store_f32(y, i, v);
  }
}

template <typename T>
__global__ void repeat3_shift2_backward_kernel(const T* __restrict__ grad_y, T* __restrict__ grad_x,
                                               long long n_in, long long S, long long T_out, int d) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n_in;
       i += (long long)gridDim.x * blockDim.x) {
    const int j = (int)(i % d);
    const long long bs = i / d, b = bs / S, s = bs % S;
    float sum = 0.0f;
    for (long long t = 3 * s + 2; t < min(3 * s + 5, T_out); t++) sum += load_f32(grad_y, (b * T_out + t) * d + j);
    store_f32(grad_x, i, sum);
  }
}

}  // namespace

Tensor avg_pool3_forward(const Tensor& x) {
  const long long B = x.size(0), T_in = x.size(1), S = (T_in + 2) / 3;
  const int d = (int)x.size(2);
  Tensor y = Tensor::empty({B, S, d}, x.dtype(), Device::CUDA);
  const long long n = y.numel();
  if (n == 0) return y;
  IFLAME_DISPATCH_ACT(x.dtype(), "avg_pool3_forward", {
    avg_pool3_forward_kernel<T><<<grid_stride_blocks(n, 256), 256, 0, cuda_stream()>>>(x.data<T>(), y.data<T>(),
                                                                                       n, T_in, S, d);
  });
  CUDA_CHECK_LAUNCH();
  return y;
}

Tensor avg_pool3_backward(const Tensor& grad_y, int64_t T_in) {
  const long long B = grad_y.size(0), S = grad_y.size(1);
  const int d = (int)grad_y.size(2);
  Tensor grad_x = Tensor::empty({B, T_in, d}, grad_y.dtype(), Device::CUDA);
  const long long n = grad_x.numel();
  if (n == 0) return grad_x;
  IFLAME_DISPATCH_ACT(grad_y.dtype(), "avg_pool3_backward", {
    avg_pool3_backward_kernel<T><<<grid_stride_blocks(n, 256), 256, 0, cuda_stream()>>>(
        grad_y.data<T>(), grad_x.data<T>(), n, (long long)T_in, S, d);
  });
  CUDA_CHECK_LAUNCH();
  return grad_x;
}

Tensor repeat3_shift2_forward(const Tensor& x, int64_t T_out) {
  const long long B = x.size(0), S = x.size(1);
  const int d = (int)x.size(2);
  Tensor y = Tensor::empty({B, T_out, d}, x.dtype(), Device::CUDA);
  const long long n = y.numel();
  if (n == 0) return y;
  IFLAME_DISPATCH_ACT(x.dtype(), "repeat3_shift2_forward", {
    repeat3_shift2_forward_kernel<T><<<grid_stride_blocks(n, 256), 256, 0, cuda_stream()>>>(
        x.data<T>(), y.data<T>(), n, S, (long long)T_out, d);
  });
  CUDA_CHECK_LAUNCH();
  return y;
}

Tensor repeat3_shift2_backward(const Tensor& grad_y, int64_t S) {
  const long long B = grad_y.size(0), T_out = grad_y.size(1);
  const int d = (int)grad_y.size(2);
  Tensor grad_x = Tensor::empty({B, S, d}, grad_y.dtype(), Device::CUDA);
  const long long n = grad_x.numel();
  if (n == 0) return grad_x;
  IFLAME_DISPATCH_ACT(grad_y.dtype(), "repeat3_shift2_backward", {
    repeat3_shift2_backward_kernel<T><<<grid_stride_blocks(n, 256), 256, 0, cuda_stream()>>>(
        grad_y.data<T>(), grad_x.data<T>(), n, (long long)S, T_out, d);
  });
  CUDA_CHECK_LAUNCH();
  return grad_x;
}

}  // namespace iflame::ops::cuda
