// cuda/swiglu.cu: the SwiGLU gate on the GPU, one thread per element (grid-stride),
// f32 arithmetic with expf (not __expf) so it agrees with the CPU reference.
//
// The packed form (a and b side by side in one row of 2P, from one product):
// a thread takes V adjacent columns of a row (V = 8 bf16 in one 16-byte load
// when P is a multiple of 8 and the rows are 16-byte aligned, else 1). Its
// backward gives each block a run of rows and each thread one group of columns
// for the whole run, so the thread sums grad_a and grad_b of its columns in
// registers; the blocks' sums go to a scratch table that one more kernel adds
// up column by column in block order (the bias gradients, deterministic:
// column_sums.cuh).
#include <cstdint>

#include "ops/cuda/column_sums.cuh"
#include "ops/cuda/elem_util.cuh"
#include "ops/swiglu.h"

namespace iflame::ops::cuda {

namespace {

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

// y[r, j..j+V) = silu(a) * b with a = ab[r, j..], b = ab[r, P + j..]; groups = P / V per row.
template <typename T, int V>
__global__ void swiglu_packed_forward_kernel(const T* __restrict__ ab, T* __restrict__ y, long long rows, int P) {
  const int groups = P / V;
  const long long n = rows * groups;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
       i += (long long)gridDim.x * blockDim.x) {
    const long long r = i / groups;
    const int j = int(i - r * groups) * V;
    float a[V], b[V], out[V];
    load_vec<V>(ab, r * 2 * P + j, a);
    load_vec<V>(ab, r * 2 * P + P + j, b);
#pragma unroll
    for (int k = 0; k < V; k++) out[k] = a[k] * sigmoid(a[k]) * b[k];
    store_vec<V>(y, r * P + j, out);
  }
}

// Rows [blockIdx.x * rows_per_block, ...) of the packed backward; thread t takes
// column groups t, t + blockDim.x, ... (V columns each). With partials, each
// block writes its column sums of grad_ab to partials[blockIdx.x, 0 .. 2P).
template <typename T, int V>
__global__ void swiglu_packed_backward_kernel(const T* __restrict__ grad_y, const T* __restrict__ ab,
                                              T* __restrict__ grad_ab, float* __restrict__ partials,
                                              long long rows, long long rows_per_block, int P) {
  const int groups = P / V;
  const long long r0 = blockIdx.x * rows_per_block;
  const long long r1 = r0 + rows_per_block < rows ? r0 + rows_per_block : rows;
  for (int grp = threadIdx.x; grp < groups; grp += blockDim.x) {
    const int j = grp * V;
    float sum_a[V], sum_b[V];
#pragma unroll
    for (int k = 0; k < V; k++) sum_a[k] = sum_b[k] = 0.0f;
    for (long long r = r0; r < r1; r++) {
      float g[V], a[V], b[V], ga[V], gb[V];
      load_vec<V>(grad_y, r * P + j, g);
      load_vec<V>(ab, r * 2 * P + j, a);
      load_vec<V>(ab, r * 2 * P + P + j, b);
#pragma unroll
      for (int k = 0; k < V; k++) {
        const float s = sigmoid(a[k]);
        ga[k] = g[k] * b[k] * s * (1.0f + a[k] * (1.0f - s));
        gb[k] = g[k] * a[k] * s;
      }
      store_vec<V>(grad_ab, r * 2 * P + j, ga);
      store_vec<V>(grad_ab, r * 2 * P + P + j, gb);
      if (partials) {
        // The sums take the values as stored (bf16-rounded when T is bf16), as a
        // product with grad_ab sees them.
#pragma unroll
        for (int k = 0; k < V; k++) {
          sum_a[k] += as_stored(ga[k], grad_ab);
          sum_b[k] += as_stored(gb[k], grad_ab);
        }
      }
    }
    if (partials) {
      float* row = partials + blockIdx.x * 2LL * P;
#pragma unroll
      for (int k = 0; k < V; k++) {
        row[j + k] = sum_a[k];
        row[P + j + k] = sum_b[k];
      }
    }
  }
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

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

Tensor swiglu_packed_forward(const Tensor& ab) {
  const int P = (int)(ab.size(-1) / 2);
  const long long rows = ab.numel() / (2LL * P);
  Shape shape = ab.shape();
  shape.back() = P;
  Tensor y = Tensor::empty(shape, ab.dtype(), Device::CUDA);
  if (rows == 0) return y;
  const bool vec = ab.dtype() == DType::BF16 && P % 8 == 0 && aligned16(ab.raw_data()) && aligned16(y.raw_data());
  IFLAME_DISPATCH_ACT(ab.dtype(), "swiglu_packed_forward", {
    if (vec) {
      const long long n = rows * (P / 8);
      swiglu_packed_forward_kernel<T, 8><<<grid_stride_blocks(n, 256, 8192), 256, 0, cuda_stream()>>>(
          ab.data<T>(), y.data<T>(), rows, P);
    } else {
      const long long n = rows * P;
      swiglu_packed_forward_kernel<T, 1><<<grid_stride_blocks(n, 256, 8192), 256, 0, cuda_stream()>>>(
          ab.data<T>(), y.data<T>(), rows, P);
    }
  });
  CUDA_CHECK_LAUNCH();
  return y;
}

Tensor swiglu_packed_backward(const Tensor& grad_y, const Tensor& ab, Tensor* bias_grad) {
  const int P = (int)(ab.size(-1) / 2);
  const long long rows = ab.numel() / (2LL * P);
  Tensor grad_ab = Tensor::empty(ab.shape(), ab.dtype(), Device::CUDA);
  if (rows == 0) return grad_ab;
  const bool vec = ab.dtype() == DType::BF16 && P % 8 == 0 && aligned16(ab.raw_data()) &&
                   aligned16(grad_y.raw_data()) && aligned16(grad_ab.raw_data());
  const int threads = column_threads(P / (vec ? 8 : 1));
  const RowRuns runs = row_runs(rows);
  const int blocks = runs.blocks;
  const long long rows_per_block = runs.rows_per_block;
  Tensor partials;
  if (bias_grad) partials = Tensor::empty({(int64_t)blocks, 2LL * P}, DType::F32, Device::CUDA);
  float* partial_ptr = bias_grad ? partials.data<float>() : nullptr;
  IFLAME_DISPATCH_ACT(ab.dtype(), "swiglu_packed_backward", {
    if (vec)
      swiglu_packed_backward_kernel<T, 8><<<blocks, threads, 0, cuda_stream()>>>(
          grad_y.data<T>(), ab.data<T>(), grad_ab.data<T>(), partial_ptr, rows, rows_per_block, P);
    else
      swiglu_packed_backward_kernel<T, 1><<<blocks, threads, 0, cuda_stream()>>>(
          grad_y.data<T>(), ab.data<T>(), grad_ab.data<T>(), partial_ptr, rows, rows_per_block, P);
  });
  CUDA_CHECK_LAUNCH();
  if (bias_grad) add_column_partials(partials, blocks, 2 * P, bias_grad->data<float>());
  return grad_ab;
}

}  // namespace iflame::ops::cuda
