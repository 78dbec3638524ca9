// cuda/rms_norm.cu: RMSNorm on the GPU, one warp per row (rows are d = 512 long
// in the model; any d works), statistics in f32.
// The fused form add_rms_norm_forward reads the residual and the branch, writes
// their sum and its norm, and keeps the row in registers in between.
// Backward: each warp writes grad_x for its rows (or adds it into the gradient
// already there) and sums grad_y * normalized x for its columns; the block
// gathers those sums in a [d] table in shared memory and adds the table into
// grad_weight with one atomic per column, so global atomics scale with the
// number of blocks, not of rows. For d <= 1024 a lane keeps its columns of a
// row, and its column sums, in registers: each row is read once.
#include <type_traits>

#include "ops/cuda/elem_util.cuh"
#include "ops/cuda/pdl.cuh"
#include "ops/rms_norm.h"

namespace iflame::ops::cuda {

namespace {

constexpr int kThreads = 256;  // 8 warps, one row each at a time
constexpr int kWarps = kThreads / 32;
constexpr size_t kSharedBudget = 48 * 1024;

// The norm of one row held in registers, lane + 32 i of it in v[i] (zero past
// d): the sum of squares in this order, inv_rms[r], then y's row.
template <typename TY, int kPerLane>
__device__ __forceinline__ void norm_row_in_registers(const float (&v)[kPerLane], const float* __restrict__ weight,
                                                      TY* __restrict__ y, float* __restrict__ inv_rms, long long r,
                                                      long long base, int lane, int d, float eps) {
  float sum_sq = 0.0f;
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
}

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
    if constexpr (kPerLane > 0) {
      float v[kPerLane];
#pragma unroll
      for (int i = 0; i < kPerLane; i++) {
        const int j = lane + 32 * i;
        v[i] = j < d ? load_f32(x, base + j) : 0.0f;
      }
      norm_row_in_registers(v, weight, y, inv_rms, r, base, lane, d, eps);
    } else {
      float sum_sq = 0.0f;
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

// sum = a + b (rounded to TA, as add() stores it), y = rms_norm(sum): the
// kPerLane > 0 form of the kernel above with the add in front. Training's
// residual add + norm2, and every residual add + norm of a decoding step (at
// batch 1 one memory round trip).
template <typename TA, typename TB, typename TY, int kPerLane>
__global__ void add_rms_norm_forward_kernel(const TA* __restrict__ a, const TB* __restrict__ b,
                                            const float* __restrict__ weight, TA* __restrict__ sum,
                                            TY* __restrict__ y, float* __restrict__ inv_rms, long long rows, int d,
                                            float eps) {
  pdl_wait();  // launched with launch_pdl, as rms_norm_forward_kernel
  pdl_trigger();
  const int lane = threadIdx.x & 31;
  for (long long r = blockIdx.x * (long long)kWarps + (threadIdx.x >> 5); r < rows;
       r += (long long)gridDim.x * kWarps) {
    const long long base = r * d;
    float v[kPerLane];
#pragma unroll
    for (int i = 0; i < kPerLane; i++) {
      const int j = lane + 32 * i;
      v[i] = j < d ? load_f32(a, base + j) + load_f32(b, base + j) : 0.0f;
    }
#pragma unroll
    for (int i = 0; i < kPerLane; i++) {
      const int j = lane + 32 * i;
      if (j < d) {
        store_f32(sum, base + j, v[i]);
        v[i] = as_stored(v[i], sum);  // the norm reads what was stored, as it would after add()
      }
    }
    norm_row_in_registers(v, weight, y, inv_rms, r, base, lane, d, eps);
  }
}

// grad_y in TG, x and grad_x in T (the norms of the f32 residual stream get
// their gradient in the blocks' bf16). With kAccumulate, grad_x holds a gradient
// already and the new one is added with __fadd_rn: a plain `+` would let the
// compiler fold the last product into an fma, which rounds once where add()
// rounds twice (seen on the H100: the f32 sums then differed in the last bit).
template <typename TG, typename T, int kPerLane, bool kAccumulate>
__global__ void rms_norm_backward_kernel(const TG* __restrict__ grad_y, const T* __restrict__ x,
                                         const float* __restrict__ weight, const float* __restrict__ inv_rms,
                                         T* grad_x, float* __restrict__ grad_weight, long long rows, int d) {
  extern __shared__ float weight_partial[];  // [d]
  for (int j = threadIdx.x; j < d; j += blockDim.x) weight_partial[j] = 0.0f;
  __syncthreads();
  const int lane = threadIdx.x & 31;
  if constexpr (kPerLane > 0) {
    // Lane owns columns lane + 32 i: their weights and their grad_weight sums stay in registers.
    float w[kPerLane], column_sum[kPerLane];
#pragma unroll
    for (int i = 0; i < kPerLane; i++) {
      const int j = lane + 32 * i;
      w[i] = j < d ? weight[j] : 0.0f;
      column_sum[i] = 0.0f;
    }
    for (long long r = blockIdx.x * (long long)kWarps + (threadIdx.x >> 5); r < rows;
         r += (long long)gridDim.x * kWarps) {
      const long long base = r * d;
      const float inv = inv_rms[r];
      float g[kPerLane], n[kPerLane];
#pragma unroll
      for (int i = 0; i < kPerLane; i++) {
        const int j = lane + 32 * i;
        g[i] = j < d ? load_f32(grad_y, base + j) : 0.0f;
        n[i] = j < d ? load_f32(x, base + j) * inv : 0.0f;
      }
      float dot = 0.0f;  // sum_j (grad_y * weight) * normalized x
#pragma unroll
      for (int i = 0; i < kPerLane; i++) dot += g[i] * w[i] * n[i];
      const float mean_dot = warp_sum(dot) / (float)d;
#pragma unroll
      for (int i = 0; i < kPerLane; i++) {
        const int j = lane + 32 * i;
        if (j < d) {
          const float value = inv * (g[i] * w[i] - n[i] * mean_dot);
          store_f32(grad_x, base + j, kAccumulate ? __fadd_rn(load_f32(grad_x, base + j), value) : value);
          column_sum[i] += g[i] * n[i];
        }
      }
    }
#pragma unroll
    for (int i = 0; i < kPerLane; i++) {
      const int j = lane + 32 * i;
      if (j < d) atomicAdd(&weight_partial[j], column_sum[i]);
    }
  } else {
    for (long long r = blockIdx.x * (long long)kWarps + (threadIdx.x >> 5); r < rows;
         r += (long long)gridDim.x * kWarps) {
      const long long base = r * d;
      const float inv = inv_rms[r];
      float dot = 0.0f;
      for (int j = lane; j < d; j += 32)
        dot += load_f32(grad_y, base + j) * weight[j] * (load_f32(x, base + j) * inv);
      const float mean_dot = warp_sum(dot) / (float)d;
      for (int j = lane; j < d; j += 32) {
        const float g = load_f32(grad_y, base + j);
        const float normalized = load_f32(x, base + j) * inv;
        const float value = inv * (g * weight[j] - normalized * mean_dot);
        store_f32(grad_x, base + j, kAccumulate ? __fadd_rn(load_f32(grad_x, base + j), value) : value);
        atomicAdd(&weight_partial[j], g * normalized);
      }
    }
  }
  __syncthreads();
  for (int j = threadIdx.x; j < d; j += blockDim.x) atomicAdd(&grad_weight[j], weight_partial[j]);
}

// Calls f(std::integral_constant<int, K>{}) with the kernels' register width for
// rows of d: K lanes' worth of 32 columns (4, 16 or 32), or 0 (any d, read twice).
// One choice for every kernel here, so the fused and plain forms sum alike.
template <typename F>
void with_per_lane(int d, F&& f) {
  if (d <= 4 * 32)
    f(std::integral_constant<int, 4>{});
  else if (d <= 16 * 32)
    f(std::integral_constant<int, 16>{});
  else if (d <= 32 * 32)
    f(std::integral_constant<int, 32>{});
  else
    f(std::integral_constant<int, 0>{});
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
      with_per_lane(d, [&](auto width) { launch(rms_norm_forward_kernel<TX, TY, decltype(width)::value>); });
    });
  });
  CUDA_CHECK_LAUNCH();
  return y;
}

Tensor add_rms_norm_forward(const Tensor& a, const Tensor& b, const Tensor& weight, float eps, Tensor& sum,
                            Tensor& inv_rms, DType out_dtype) {
  const int d = (int)a.size(-1);
  IFLAME_CHECK(d <= 32 * 32, "add_rms_norm_forward: rows of ", d, " > 1024 (use add, then rms_norm_forward)");
  const long long rows = a.numel() / d;
  sum = Tensor::empty(a.shape(), a.dtype(), Device::CUDA);
  Tensor y = Tensor::empty(a.shape(), out_dtype, Device::CUDA);
  inv_rms = Tensor::empty({rows}, DType::F32, Device::CUDA);
  if (rows == 0) return y;
  const unsigned blocks = grid_stride_blocks(rows, kWarps, 8192);
  IFLAME_DISPATCH_ACT(a.dtype(), "add_rms_norm_forward", {
    using TA = T;
    IFLAME_DISPATCH_ACT(b.dtype(), "add_rms_norm_forward", {
      using TB = T;
      IFLAME_DISPATCH_ACT(out_dtype, "add_rms_norm_forward", {
        using TY = T;
        auto launch = [&](auto kernel) {
          launch_pdl(kernel, blocks, kThreads, 0, a.data<TA>(), b.data<TB>(), weight.data<float>(),
                     sum.data<TA>(), y.data<TY>(), inv_rms.data<float>(), rows, d, eps);
        };
        // The same width as rms_norm_forward picks for d: the same sums in the same order
        // (d <= 1024 was checked above, so the width is never 0 here).
        with_per_lane(d, [&](auto width) {
          constexpr int kWidth = decltype(width)::value;
          if constexpr (kWidth > 0) launch(add_rms_norm_forward_kernel<TA, TB, TY, kWidth>);
        });
      });
    });
  });
  CUDA_CHECK_LAUNCH();
  return y;
}

Tensor rms_norm_backward(const Tensor& grad_y, const Tensor& x, const Tensor& weight, const Tensor& inv_rms,
                         Tensor& grad_weight, Tensor* accumulate) {
  const int d = (int)x.size(-1);
  const long long rows = x.numel() / d;
  const size_t shared_bytes = (size_t)d * sizeof(float);
  IFLAME_CHECK(shared_bytes <= kSharedBudget, "rms_norm_backward: d = ", d,
               " is too large for the shared-memory weight table (at most ", kSharedBudget / sizeof(float), ")");
  Tensor grad_x = accumulate ? *accumulate : Tensor::empty(x.shape(), x.dtype(), Device::CUDA);
  if (rows == 0) return grad_x;
  const unsigned blocks = grid_stride_blocks(rows, kWarps, 1024);
  IFLAME_DISPATCH_ACT(x.dtype(), "rms_norm_backward", {
    using TX = T;
    IFLAME_DISPATCH_ACT(grad_y.dtype(), "rms_norm_backward", {
      using TG = T;
      auto launch = [&](auto kernel) {
        kernel<<<blocks, kThreads, shared_bytes, cuda_stream()>>>(grad_y.data<TG>(), x.data<TX>(),
                                                                  weight.data<float>(), inv_rms.data<float>(),
                                                                  grad_x.data<TX>(), grad_weight.data<float>(),
                                                                  rows, d);
      };
      auto pick = [&](auto accumulate_tag) {
        constexpr bool kAcc = decltype(accumulate_tag)::value;
        with_per_lane(d, [&](auto width) { launch(rms_norm_backward_kernel<TG, TX, decltype(width)::value, kAcc>); });
      };
      if (accumulate)
        pick(std::true_type{});
      else
        pick(std::false_type{});
    });
  });
  CUDA_CHECK_LAUNCH();
  return grad_x;
}

}  // namespace iflame::ops::cuda
