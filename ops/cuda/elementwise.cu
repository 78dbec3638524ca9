// cuda/elementwise.cu: the element-wise ops on the GPU: one thread per element,
// grid-stride loops; inputs of either activation dtype (f32/bf16, possibly mixed),
// f32 arithmetic. The skip weight is read from device memory inside the kernels.
#include "ops/cuda/elem_util.cuh"
#include "ops/elementwise.h"

namespace iflame::ops::cuda {

namespace {

constexpr int kThreads = 256;

template <typename TA, typename TB>
__global__ void add_kernel(const TA* __restrict__ a, const TB* __restrict__ b, TA* __restrict__ y, long long n) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
       i += (long long)gridDim.x * blockDim.x)
    store_f32(y, i, load_f32(a, i) + load_f32(b, i));
}

template <typename TA, typename TB>
__global__ void add_inplace_kernel(TA* a, const TB* b, long long n) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
       i += (long long)gridDim.x * blockDim.x)
    store_f32(a, i, load_f32(a, i) + load_f32(b, i));
}

template <typename TX, typename TS>
__global__ void skip_scale_add_forward_kernel(const TX* __restrict__ x, const float* __restrict__ weights,
                                              int index, const TS* __restrict__ skip, TX* __restrict__ y,
                                              long long n) {
  const float w = weights[index];
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
       i += (long long)gridDim.x * blockDim.x)
    store_f32(y, i, w * load_f32(x, i) + load_f32(skip, i));
}

// grad_x = w * grad_y, and each block's sum of grad_y * x (double) into partials[block].
template <typename TX, typename TG>
__global__ void skip_scale_add_backward_kernel(const TG* __restrict__ grad_y, const TX* __restrict__ x,
                                               const float* __restrict__ weights, int index,
                                               TX* __restrict__ grad_x, double* __restrict__ partials,
                                               long long n) {
  const float w = weights[index];
  double partial = 0.0;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
       i += (long long)gridDim.x * blockDim.x) {
    const float g = load_f32(grad_y, i);
    store_f32(grad_x, i, w * g);
    partial += (double)g * (double)load_f32(x, i);
  }
  const double total = block_sum(partial);
  if (threadIdx.x == 0) partials[blockIdx.x] = total;
}

// One block: grad_weights[index] += sum of the partials, in a fixed order.
__global__ void add_partials_kernel(const double* __restrict__ partials, int count, float* __restrict__ target) {
  double sum = 0.0;
  for (int i = threadIdx.x; i < count; i += blockDim.x) sum += partials[i];
  sum = block_sum(sum);
  if (threadIdx.x == 0) *target += (float)sum;
}

template <typename T>
__global__ void scale_kernel(const T* __restrict__ x, float s, T* __restrict__ y, long long n) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
       i += (long long)gridDim.x * blockDim.x)
    store_f32(y, i, s * load_f32(x, i));
}

// Calls f(TA{}, TB{}) with the storage types of two activation dtypes.
template <typename F>
void dispatch_two(DType a, DType b, const char* op, F&& f) {
  const bool a32 = a == DType::F32, b32 = b == DType::F32;
  IFLAME_CHECK((a32 || a == DType::BF16) && (b32 || b == DType::BF16), op,
               ": activations must be f32 or bf16, got ", dtype_name(a), " and ", dtype_name(b));
  if (a32 && b32) f(float{}, float{});
  else if (a32) f(float{}, bf16{});
  else if (b32) f(bf16{}, float{});
  else f(bf16{}, bf16{});
}

}  // namespace

Tensor add(const Tensor& a, const Tensor& b) {
  Tensor y = Tensor::empty(a.shape(), a.dtype(), Device::CUDA);
  const long long n = a.numel();
  if (n == 0) return y;
  dispatch_two(a.dtype(), b.dtype(), "add", [&](auto ta, auto tb) {
    using TA = decltype(ta);
    using TB = decltype(tb);
    add_kernel<TA, TB><<<grid_stride_blocks(n, kThreads), kThreads, 0, cuda_stream()>>>(
        a.data<TA>(), b.data<TB>(), y.data<TA>(), n);
  });
  CUDA_CHECK_LAUNCH();
  return y;
}

void add_inplace(Tensor& a, const Tensor& b) {
  const long long n = a.numel();
  if (n == 0) return;
  dispatch_two(a.dtype(), b.dtype(), "add_inplace", [&](auto ta, auto tb) {
    using TA = decltype(ta);
    using TB = decltype(tb);
    add_inplace_kernel<TA, TB><<<grid_stride_blocks(n, kThreads), kThreads, 0, cuda_stream()>>>(
        a.data<TA>(), b.data<TB>(), n);
  });
  CUDA_CHECK_LAUNCH();
}

Tensor skip_scale_add_forward(const Tensor& x, const Tensor& weights, int index, const Tensor& skip) {
  Tensor y = Tensor::empty(x.shape(), x.dtype(), Device::CUDA);
  const long long n = x.numel();
  if (n == 0) return y;
  dispatch_two(x.dtype(), skip.dtype(), "skip_scale_add_forward", [&](auto tx, auto ts) {
    using TX = decltype(tx);
    using TS = decltype(ts);
    skip_scale_add_forward_kernel<TX, TS><<<grid_stride_blocks(n, kThreads), kThreads, 0, cuda_stream()>>>(
        x.data<TX>(), weights.data<float>(), index, skip.data<TS>(), y.data<TX>(), n);
  });
  CUDA_CHECK_LAUNCH();
  return y;
}

void skip_scale_add_backward(const Tensor& grad_y, const Tensor& x, const Tensor& weights, int index,
                             Tensor& grad_x, Tensor& grad_weights) {
  grad_x = Tensor::empty(x.shape(), x.dtype(), Device::CUDA);
  const long long n = x.numel();
  if (n == 0) return;
  // Per-block sums go to a scratch array (doubles, held in an f32 tensor of twice
  // the length: Tensor has no f64) and are added up by one block: deterministic.
  const unsigned blocks = grid_stride_blocks(n, kThreads, 1024);
  Tensor partials = Tensor::empty({2 * (int64_t)blocks}, DType::F32, Device::CUDA);
  double* partial_ptr = reinterpret_cast<double*>(partials.data<float>());
  dispatch_two(x.dtype(), grad_y.dtype(), "skip_scale_add_backward", [&](auto tx, auto tg) {
    using TX = decltype(tx);
    using TG = decltype(tg);
    skip_scale_add_backward_kernel<TX, TG><<<blocks, kThreads, 0, cuda_stream()>>>(
        grad_y.data<TG>(), x.data<TX>(), weights.data<float>(), index, grad_x.data<TX>(), partial_ptr, n);
  });
  CUDA_CHECK_LAUNCH();
  add_partials_kernel<<<1, kThreads, 0, cuda_stream()>>>(partial_ptr, (int)blocks,
                                                         grad_weights.data<float>() + index);
  CUDA_CHECK_LAUNCH();
}

Tensor scale(const Tensor& x, float s) {
  Tensor y = Tensor::empty(x.shape(), x.dtype(), Device::CUDA);
  const long long n = x.numel();
  if (n == 0) return y;
  IFLAME_DISPATCH_ACT(x.dtype(), "scale", {
    scale_kernel<T><<<grid_stride_blocks(n, kThreads), kThreads, 0, cuda_stream()>>>(x.data<T>(), s, y.data<T>(), n);
  });
  CUDA_CHECK_LAUNCH();
  return y;
}

}  // namespace iflame::ops::cuda
