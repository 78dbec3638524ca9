// cuda/embedding.cu: embedding lookup and its scatter-add on the GPU.
//
// Forward: one thread per output element (coalesced along d).
// Backward: many tokens hit the same few vocabulary rows (V = 132 in the model,
// hundreds of thousands of tokens per batch), so adding every element straight
// into grad_weight would pile float atomics onto the same addresses. Instead a
// block owns a 32-column slice and a chunk of tokens, sums into a [V, 32]
// shared-memory table, and then adds that table into grad_weight once. When V
// is too large for shared memory it falls back to one atomic per element.
// Tokens are not range-checked here (the host does it); out-of-range ones are
// never used as an index (forward writes NaN, backward skips them).
#include <cmath>

#include "ops/cuda/elem_util.cuh"
#include "ops/embedding.h"

namespace iflame::ops::cuda {

namespace {

constexpr int kColumnsPerSlice = 32;          // one warp lane per column
constexpr int kBackwardThreads = 256;         // 8 warps
constexpr int kTokensPerChunk = 4096;
constexpr size_t kSharedBudget = 48 * 1024;  // default dynamic shared memory limit

template <typename T>
__global__ void embedding_forward_kernel(const float* __restrict__ weight, const int32_t* __restrict__ tokens,
                                         T* __restrict__ out, long long n_tokens, int vocab, int d) {
  const long long total = n_tokens * d;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
       i += (long long)gridDim.x * blockDim.x) {
    const long long s = i / d;
    const int col = (int)(i - s * d);
    const int tok = tokens[s];
    const float v = (tok >= 0 && tok < vocab) ? weight[(long long)tok * d + col] : NAN;
    store_f32(out, i, v);
  }
}

// grid = (column slices, token chunks); dynamic shared memory: vocab * 32 floats.
template <typename T>
__global__ void embedding_backward_shared_kernel(const T* __restrict__ grad_out,
                                                 const int32_t* __restrict__ tokens,
                                                 float* __restrict__ grad_weight, long long n_tokens,
                                                 int vocab, int d) {
  extern __shared__ float table[];  // [vocab][32]
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  const int col = blockIdx.x * kColumnsPerSlice + lane;
  for (int i = threadIdx.x; i < vocab * kColumnsPerSlice; i += blockDim.x) table[i] = 0.0f;
  __syncthreads();
  const long long chunk_begin = (long long)blockIdx.y * kTokensPerChunk;
  const long long chunk_end = min(chunk_begin + kTokensPerChunk, n_tokens);
  if (col < d) {
    for (long long s = chunk_begin + warp; s < chunk_end; s += warps) {
      const int tok = tokens[s];
      if (tok < 0 || tok >= vocab) continue;
      atomicAdd(&table[tok * kColumnsPerSlice + lane], load_f32(grad_out, s * d + col));
    }
  }
  __syncthreads();
  for (int i = threadIdx.x; i < vocab * kColumnsPerSlice; i += blockDim.x) {
    const int c = blockIdx.x * kColumnsPerSlice + (i % kColumnsPerSlice);
    const float v = table[i];
    if (c < d && v != 0.0f) atomicAdd(&grad_weight[(long long)(i / kColumnsPerSlice) * d + c], v);
  }
}

template <typename T>
__global__ void embedding_backward_atomic_kernel(const T* __restrict__ grad_out,
                                                 const int32_t* __restrict__ tokens,
                                                 float* __restrict__ grad_weight, long long n_tokens,
                                                 int vocab, int d) {
  const long long total = n_tokens * d;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
       i += (long long)gridDim.x * blockDim.x) {
    const long long s = i / d;
    const int col = (int)(i - s * d);
    const int tok = tokens[s];
    if (tok >= 0 && tok < vocab) atomicAdd(&grad_weight[(long long)tok * d + col], load_f32(grad_out, i));
  }
}

}  // namespace

Tensor embedding_forward(const Tensor& weight, const Tensor& tokens, DType out_dtype) {
  const int vocab = (int)weight.size(0), d = (int)weight.size(1);
  const long long n = tokens.numel();
  Shape out_shape = tokens.shape();
  out_shape.push_back(d);
  Tensor out = Tensor::empty(out_shape, out_dtype, Device::CUDA);
  if (out.numel() == 0) return out;
  IFLAME_DISPATCH_ACT(out_dtype, "embedding_forward", {
    embedding_forward_kernel<T><<<grid_stride_blocks(n * d, 256), 256, 0, cuda_stream()>>>(
        weight.data<float>(), tokens.data<int32_t>(), out.data<T>(), n, vocab, d);
  });
  CUDA_CHECK_LAUNCH();
  return out;
}

void embedding_backward(const Tensor& grad_out, const Tensor& tokens, Tensor& grad_weight) {
  const int vocab = (int)grad_weight.size(0), d = (int)grad_weight.size(1);
  const long long n = tokens.numel();
  if (n == 0 || d == 0) return;
  const size_t shared_bytes = (size_t)vocab * kColumnsPerSlice * sizeof(float);
  const long long chunks = (n + kTokensPerChunk - 1) / kTokensPerChunk;
  if (shared_bytes <= kSharedBudget && chunks <= 65535) {
    dim3 grid((d + kColumnsPerSlice - 1) / kColumnsPerSlice, (unsigned)chunks);
    IFLAME_DISPATCH_ACT(grad_out.dtype(), "embedding_backward", {
      embedding_backward_shared_kernel<T><<<grid, kBackwardThreads, shared_bytes, cuda_stream()>>>(
          grad_out.data<T>(), tokens.data<int32_t>(), grad_weight.data<float>(), n, vocab, d);
    });
  } else {
    IFLAME_DISPATCH_ACT(grad_out.dtype(), "embedding_backward", {
      embedding_backward_atomic_kernel<T><<<grid_stride_blocks(n * d, 256), 256, 0, cuda_stream()>>>(
          grad_out.data<T>(), tokens.data<int32_t>(), grad_weight.data<float>(), n, vocab, d);
    });
  }
  CUDA_CHECK_LAUNCH();
}

}  // namespace iflame::ops::cuda
