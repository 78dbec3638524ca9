// cuda/rms_norm.cu: RMSNorm on the GPU, one warp per row (rows are d = 512 long
// in the model; any d works), statistics in f32.
// Backward: each warp writes grad_x for its rows and adds grad_y * normalized x
// into a per-block [d] table in shared memory; the block then adds the table
// into grad_weight with one atomic per column, so global atomics scale with the
// number of blocks, not of rows.
#include "ops/cuda/elem_util.cuh"
#include "ops/cuda/pdl.cuh"
#include "ops/rms_norm.h"

namespace iflame::ops::cuda {

namespace {

constexpr int kThreads = 256;  // 8 warps, one row each at a time
constexpr int kWarps = kThreads / 32;
constexpr size_t kSharedBudget = 48 * 1024;

// kPerLane > 0: the row (d <= 32 kPerLane) is held in registers between the
// sum of squares and the output, so it is read once and every load of a row is
// issued before the first is used (one memory round trip, which is what a
// decoding step's one-row norms wait on); kPerLane == 0: any d, read twice.
// The same sums in the same order either way.
template <typename T, typename TY, int kPerLane>
__global__ void rms_norm_forward_kernel(const T* __restrict__ x, const float* __restrict__ weight,
                                        TY* __restrict__ y, float* __restrict__ inv_rms, long long rows, int d,
                                        float eps) {
  pdl_wait();  // launched with launch_pdl (pdl.cuh): decoding's one-row norms gain its overlap
  pdl_trigger();
  const int lane = threadIdx.x & 31;
  for (long long r = blockIdx.x * (long long)kWarps + (threadIdx.x >> 5); r < rows;
       r += (long long)gridDim.x * kWarps) {
    const long long base = r * d;
    float sum_sq = 0.0f;
    if constexpr (kPerLane > 0) {
      float v[kPerLane];
#pragma unroll
      for (int i = 0; i < kPerLane; i++) {
        const int j = lane + 32 * i;
        v[i] = j < d ? load_f32(x, base + j) : 0.0f;
      }
#pragma unroll
      for (int i = 0; i < kPerLane; i++) sum_sq += v[i] * v[i];
      sum_sq = warp_sum(sum_sq);
      const float inv = 1.0f / sqrtf(sum_sq / (float)d + eps);
      if (lane == 0) inv_rms[r] = inv;
#pragma unroll
      for (int i = 0; i < kPerLane; i++) {
        const int j = lane + 32 * i;
        if (j < d) store_f32(y, base + j, v[i] * inv * weight[j]);
      }
    } else {
      for (int j = lane; j < d; j += 32) {
        const float v = load_f32(x, base + j);
        sum_sq += v * v;
      }
      sum_sq = warp_sum(sum_sq);
      const float inv = 1.0f / sqrtf(sum_sq / (float)d + eps);
      if (lane == 0) inv_rms[r] = inv;
      for (int j = lane; j < d; j += 32) store_f32(y, base + j, load_f32(x, base + j) * inv * weight[j]);
    }
  }
}

// grad_y in TG, x and grad_x in T (the norms of the f32 residual stream get
// their gradient in the blocks' bf16).
template <typename TG, typename T>
__global__ void rms_norm_backward_kernel(const TG* __restrict__ grad_y, const T* __restrict__ x,
                                         const float* __restrict__ weight, const float* __restrict__ inv_rms,
                                         T* __restrict__ grad_x, float* __restrict__ grad_weight, long long rows,
                                         int d) {
  extern __shared__ float weight_partial[];  // [d]
  for (int j = threadIdx.x; j < d; j += blockDim.x) weight_partial[j] = 0.0f;
  __syncthreads();
  const int lane = threadIdx.x & 31;
  for (long long r = blockIdx.x * (long long)kWarps + (threadIdx.x >> 5); r < rows;
       r += (long long)gridDim.x * kWarps) {
    const long long base = r * d;
    const float inv = inv_rms[r];
    float dot = 0.0f;  // sum_j (grad_y * weight) * normalized x
    for (int j = lane; j < d; j += 32)
      dot += load_f32(grad_y, base + j) * weight[j] * (load_f32(x, base + j) * inv);
    const float mean_dot = warp_sum(dot) / (float)d;
    for (int j = lane; j < d; j += 32) {
      const float g = load_f32(grad_y, base + j);
      const float normalized = load_f32(x, base + j) * inv;
      store_f32(grad_x, base + j, inv * (g * weight[j] - normalized * mean_dot));
      atomicAdd(&weight_partial[j], g * normalized);
    }
  }
  __syncthreads();
  for (int j = threadIdx.x; j < d; j += blockDim.x) atomicAdd(&grad_weight[j], weight_partial[j]);
}

}  // namespace

Tensor rms_norm_forward(const Tensor& x, const Tensor& weight, float eps, Tensor& inv_rms, DType out_dtype) {
  const int d = (int)x.size(-1);
  const long long rows = x.numel() / d;
  Tensor y = Tensor::empty(x.shape(), out_dtype, Device::CUDA);
  inv_rms = Tensor::empty({rows}, DType::F32, Device::CUDA);
  if (rows == 0) return y;
  const unsigned blocks = grid_stride_blocks(rows, kWarps, 8192);
  IFLAME_DISPATCH_ACT(x.dtype(), "rms_norm_forward", {
    using TX = T;
    IFLAME_DISPATCH_ACT(out_dtype, "rms_norm_forward", {
      using TY = T;
      auto launch = [&](auto kernel) {
        launch_pdl(kernel, blocks, kThreads, 0, x.data<TX>(), weight.data<float>(), y.data<TY>(),
                   inv_rms.data<float>(), rows, d, eps);
      };
      if (d <= 4 * 32)
        launch(rms_norm_forward_kernel<TX, TY, 4>);
      else if (d <= 16 * 32)
        launch(rms_norm_forward_kernel<TX, TY, 16>);
      else if (d <= 32 * 32)
        launch(rms_norm_forward_kernel<TX, TY, 32>);
      else
        launch(rms_norm_forward_kernel<TX, TY, 0>);
    });
  });
  CUDA_CHECK_LAUNCH();
  return y;
}

Tensor rms_norm_backward(const Tensor& grad_y, const Tensor& x, const Tensor& weight, const Tensor& inv_rms,
                         Tensor& grad_weight) {
  const int d = (int)x.size(-1);
  const long long rows = x.numel() / d;
  const size_t shared_bytes = (size_t)d * sizeof(float);
  IFLAME_CHECK(shared_bytes <= kSharedBudget, "rms_norm_backward: d = ", d,
               " is too large for the shared-memory weight table (at most ", kSharedBudget / sizeof(float), ")");
  Tensor grad_x = Tensor::empty(x.shape(), x.dtype(), Device::CUDA);
  if (rows == 0) return grad_x;
  const unsigned blocks = grid_stride_blocks(rows, kWarps, 1024);
  IFLAME_DISPATCH_ACT(x.dtype(), "rms_norm_backward", {
    using TX = T;
    IFLAME_DISPATCH_ACT(grad_y.dtype(), "rms_norm_backward", {
      rms_norm_backward_kernel<T, TX><<<blocks, kThreads, shared_bytes, cuda_stream()>>>(
          grad_y.data<T>(), x.data<TX>(), weight.data<float>(), inv_rms.data<float>(), grad_x.data<TX>(),
          grad_weight.data<float>(), rows, d);
    });
  });
  CUDA_CHECK_LAUNCH();
  return grad_x;
}

}  // namespace iflame::ops::cuda
