// cuda/cross_entropy.cu: the cross-entropy loss on the GPU.
//
// Forward, two kernels: (1) one warp per row finds the first argmax, the
// log-sum-exp (f32, max-shifted) and the row's loss and hit, written to scratch
// arrays; (2) one block adds the rows up in a fixed order (double sums), so the
// loss is the same bit for bit from run to run, and writes loss, accuracy and
// valid_count. Backward: one thread per logit. Nothing waits for the GPU.
// Targets are not range-checked here (the host does it); a non-ignored target
// outside [0, V) gives that row loss NaN rather than a wild read.
#include <climits>
#include <cmath>

#include "ops/cross_entropy.h"
#include "ops/cuda/elem_util.cuh"

namespace iflame::ops::cuda {

namespace {

constexpr int kRowThreads = 256;  // 8 warps = 8 rows at a time per block
constexpr int kRowWarps = kRowThreads / 32;
constexpr int kReduceThreads = 1024;

template <typename T>
__global__ void cross_entropy_rows_kernel(const T* __restrict__ logits, const int32_t* __restrict__ targets,
                                          float* __restrict__ lse, float* __restrict__ row_loss,
                                          float* __restrict__ row_correct, long long N, int V, int ignore_index) {
  const int lane = threadIdx.x & 31;
  for (long long n = blockIdx.x * (long long)kRowWarps + (threadIdx.x >> 5); n < N;
       n += (long long)gridDim.x * kRowWarps) {
    const long long base = n * V;
    // First maximum: each lane scans its columns in increasing order (strict >),
    // then ties between lanes go to the lower column.
    float best = -INFINITY;
    int best_idx = INT_MAX;
    if (lane < V) {
      best = load_f32(logits, base + lane);
      best_idx = lane;
    }
    for (int v = lane + 32; v < V; v += 32) {
      const float x = load_f32(logits, base + v);
      if (x > best) {
        best = x;
        best_idx = v;
      }
    }
    for (int offset = 16; offset > 0; offset >>= 1) {
      const float other = __shfl_xor_sync(0xffffffffu, best, offset);
      const int other_idx = __shfl_xor_sync(0xffffffffu, best_idx, offset);
      if (other > best || (other == best && other_idx < best_idx)) {
        best = other;
        best_idx = other_idx;
      }
    }
    float sum_exp = 0.0f;
    for (int v = lane; v < V; v += 32) sum_exp += expf(load_f32(logits, base + v) - best);
    sum_exp = warp_sum(sum_exp);
    if (lane == 0) {
      const float row_lse = best + logf(sum_exp);
      lse[n] = row_lse;
      const int t = targets[n];
      float loss = 0.0f, correct = 0.0f;
      if (t != ignore_index) {
        loss = (t >= 0 && t < V) ? row_lse - load_f32(logits, base + t) : NAN;
        correct = (best_idx == t) ? 1.0f : 0.0f;
      }
      row_loss[n] = loss;
      row_correct[n] = correct;
    }
  }
}

// One block: fixed-order sums over the rows -> loss, accuracy, valid_count.
__global__ void cross_entropy_total_kernel(const float* __restrict__ row_loss, const float* __restrict__ row_correct,
                                           const int32_t* __restrict__ targets, long long N, int ignore_index,
                                           float* __restrict__ loss, float* __restrict__ accuracy,
                                           float* __restrict__ valid_count) {
  double loss_sum = 0, correct_sum = 0, valid_sum = 0;
  for (long long n = threadIdx.x; n < N; n += blockDim.x) {
    loss_sum += row_loss[n];
    correct_sum += row_correct[n];
    valid_sum += (targets[n] != ignore_index) ? 1.0 : 0.0;
  }
  loss_sum = block_sum(loss_sum);
  correct_sum = block_sum(correct_sum);
  valid_sum = block_sum(valid_sum);
  if (threadIdx.x == 0) {
    loss[0] = valid_sum > 0 ? (float)(loss_sum / valid_sum) : 0.0f;
    accuracy[0] = valid_sum > 0 ? (float)(correct_sum / valid_sum) : 0.0f;
    valid_count[0] = (float)valid_sum;
  }
}

template <typename T>
__global__ void cross_entropy_backward_kernel(const float* __restrict__ grad_loss, const T* __restrict__ logits,
                                              const int32_t* __restrict__ targets, const float* __restrict__ lse,
                                              const float* __restrict__ valid_count, T* __restrict__ grad,
                                              long long total, int V, int ignore_index) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
       i += (long long)gridDim.x * blockDim.x) {
    const long long n = i / V;
    const int v = (int)(i - n * V);
    const int t = targets[n];
    float g = 0.0f;
    if (t != ignore_index) {  // then valid_count >= 1
      const float factor = grad_loss[0] / valid_count[0];
      const float softmax = expf(load_f32(logits, i) - lse[n]);
      g = factor * (softmax - (v == t ? 1.0f : 0.0f));
    }
    store_f32(grad, i, g);
  }
}

}  // namespace

CrossEntropyOutput cross_entropy_forward(const Tensor& logits, const Tensor& targets, int ignore_index) {
  const int V = (int)logits.size(-1);
  const long long N = logits.numel() / V;
  CrossEntropyOutput out;
  out.lse = Tensor::empty({N}, DType::F32, Device::CUDA);
  out.loss = Tensor::empty({1}, DType::F32, Device::CUDA);
  out.accuracy = Tensor::empty({1}, DType::F32, Device::CUDA);
  out.valid_count = Tensor::empty({1}, DType::F32, Device::CUDA);
  Tensor row_loss = Tensor::empty({N}, DType::F32, Device::CUDA);
  Tensor row_correct = Tensor::empty({N}, DType::F32, Device::CUDA);
  if (N > 0) {
    IFLAME_DISPATCH_ACT(logits.dtype(), "cross_entropy_forward", {
      cross_entropy_rows_kernel<T><<<grid_stride_blocks(N, kRowWarps, 8192), kRowThreads, 0, cuda_stream()>>>(
          logits.data<T>(), targets.data<int32_t>(), out.lse.data<float>(), row_loss.data<float>(),
          row_correct.data<float>(), N, V, ignore_index);
    });
    CUDA_CHECK_LAUNCH();
  }
  cross_entropy_total_kernel<<<1, kReduceThreads, 0, cuda_stream()>>>(
      row_loss.data<float>(), row_correct.data<float>(), targets.data<int32_t>(), N, ignore_index,
      out.loss.data<float>(), out.accuracy.data<float>(), out.valid_count.data<float>());
  CUDA_CHECK_LAUNCH();
  return out;  // the scratch arrays go back to the stream-ordered allocator
}

Tensor cross_entropy_backward(const Tensor& grad_loss, const Tensor& logits, const Tensor& targets,
                              const CrossEntropyOutput& fwd, int ignore_index) {
  const int V = (int)logits.size(-1);
  const long long total = logits.numel();
  Tensor grad = Tensor::empty(logits.shape(), logits.dtype(), Device::CUDA);
  if (total == 0) return grad;
  IFLAME_DISPATCH_ACT(logits.dtype(), "cross_entropy_backward", {
    cross_entropy_backward_kernel<T><<<grid_stride_blocks(total, 256), 256, 0, cuda_stream()>>>(
        grad_loss.data<float>(), logits.data<T>(), targets.data<int32_t>(), fwd.lse.data<float>(),
        fwd.valid_count.data<float>(), grad.data<T>(), total, V, ignore_index);
  });
  CUDA_CHECK_LAUNCH();
  return grad;
}

}  // namespace iflame::ops::cuda
