// decode_ops.cu: the decoding kernels of infer/decode_ops.h on the GPU. Each
// reads the step's position from the device counter, so a captured graph
// replays correctly at every position. Arithmetic is the training kernels'
// (ops/cuda/rope.cu, swiglu.cu, rms_norm.cu), expression for expression.
#include <vector>

#include "infer/cached_attention.h"
#include "infer/decode_ops.h"
#include "ops/cuda/elem_util.cuh"
#include "ops/cuda/pdl.cuh"
#include "ops/rope.h"

namespace iflame::infer::cuda {

using ops::cuda::grid_stride_blocks;
using ops::cuda::launch_pdl;
using ops::cuda::pdl_trigger;
using ops::cuda::pdl_wait;
using ops::cuda::warp_sum;

namespace {

constexpr int kMaxHalf = 128;  // head dims up to 256, as ops/cuda/rope.cu
struct Frequencies {
  float f[kMaxHalf];
};

using ops::cuda::store_f32;

// One thread per rotated pair (b, h, j < D/2): q and k rotated, v copied; the
// outputs stored as T (f32, or bf16 for bf16 caches).
template <typename T>
__global__ void qkv_rope_kernel(const float* __restrict__ qkv, T* __restrict__ q, T* __restrict__ k_dst,
                                T* __restrict__ v_dst, int B, int H, int half, int capacity,
                                const int* __restrict__ position, int position_stride, int div,
                                Frequencies freq) {
  pdl_wait();  // every kernel here is launched with launch_pdl (ops/cuda/pdl.cuh)
  pdl_trigger();
  const long long pairs = (long long)B * H * half;
  const int D = 2 * half;
  const long long HD = (long long)H * D;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < pairs;
       i += (long long)gridDim.x * blockDim.x) {
    const int j = (int)(i % half);
    const long long bh = i / half;  // b * H + h
    const int b = (int)(bh / H), h = (int)(bh % H);
    const int pos = position[b * position_stride] / div;
    if (capacity > 0 && pos >= capacity) continue;  // the host refuses such steps; never write out of bounds
    const float* row = qkv + (long long)b * 3 * HD + (long long)h * D;
    const float a = (float)pos * freq.f[j];
    const float c = cosf(a), s = sinf(a);
    const float q1 = row[j], q2 = row[half + j];
    const float k1 = row[HD + j], k2 = row[HD + half + j];
    store_f32(q, bh * D + j, q1 * c + q2 * s);
    store_f32(q, bh * D + half + j, -q1 * s + q2 * c);
    const long long dst = capacity > 0 ? (((long long)b * capacity + pos) * H + h) * D : bh * D;
    store_f32(k_dst, dst + j, k1 * c + k2 * s);
    store_f32(k_dst, dst + half + j, -k1 * s + k2 * c);
    store_f32(v_dst, dst + j, row[2 * HD + j]);
    store_f32(v_dst, dst + half + j, row[2 * HD + half + j]);
  }
}

__device__ __forceinline__ float sigmoid(float v) { return 1.0f / (1.0f + expf(-v)); }

__global__ void swiglu_pair_kernel(const float* __restrict__ ab, float* __restrict__ y, long long rows, int F) {
  const long long n = rows * F;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
       i += (long long)gridDim.x * blockDim.x) {
    const long long r = i / F;
    const int c = (int)(i % F);
    const float av = ab[r * 2 * F + c];
    y[i] = av * sigmoid(av) * ab[r * 2 * F + F + c];
  }
}

constexpr int kNormThreads = 256;  // one warp per row, as ops/cuda/rms_norm.cu
constexpr int kNormWarps = kNormThreads / 32;

// h = x + y and n = RMSNorm(h) * weight, one warp per row; with kPerLane > 0
// (d <= 32 kPerLane) the row stays in registers, so its loads are all issued
// at once and h is not read back: at batch 1 this norm is one memory round
// trip. The sums are those of ops/cuda/rms_norm.cu, in the same order.
template <int kPerLane>
__global__ void add_rms_norm_kernel(const float* __restrict__ x, const float* __restrict__ y,
                                    const float* __restrict__ weight, float* __restrict__ h,
                                    float* __restrict__ n, long long rows, int d, float eps) {
  pdl_wait();
  pdl_trigger();
  const int lane = threadIdx.x & 31;
  for (long long r = blockIdx.x * (long long)kNormWarps + (threadIdx.x >> 5); r < rows;
       r += (long long)gridDim.x * kNormWarps) {
    const long long base = r * d;
    float sum_sq = 0.0f;
    if constexpr (kPerLane > 0) {
      float v[kPerLane];
#pragma unroll
      for (int i = 0; i < kPerLane; i++) {
        const int j = lane + 32 * i;
        v[i] = j < d ? x[base + j] + y[base + j] : 0.0f;
      }
#pragma unroll
      for (int i = 0; i < kPerLane; i++) {
        const int j = lane + 32 * i;
        if (j < d) h[base + j] = v[i];
        sum_sq += v[i] * v[i];
      }
      sum_sq = warp_sum(sum_sq);
      const float inv = 1.0f / sqrtf(sum_sq / (float)d + eps);
#pragma unroll
      for (int i = 0; i < kPerLane; i++) {
        const int j = lane + 32 * i;
        if (j < d) n[base + j] = v[i] * inv * weight[j];
      }
    } else {
      for (int j = lane; j < d; j += 32) {
        const float v = x[base + j] + y[base + j];
        h[base + j] = v;
        sum_sq += v * v;
      }
      sum_sq = warp_sum(sum_sq);
      const float inv = 1.0f / sqrtf(sum_sq / (float)d + eps);
      // Each lane reads back only the elements it wrote itself.
      for (int j = lane; j < d; j += 32) n[base + j] = h[base + j] * inv * weight[j];
    }
  }
}

__global__ void write_group_slot_kernel(float* __restrict__ group, const float* __restrict__ x, int B, int d,
                                        const int* __restrict__ position, int position_stride, int div) {
  pdl_wait();
  pdl_trigger();
  const long long n = (long long)B * d;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
       i += (long long)gridDim.x * blockDim.x) {
    const long long b = i / d;
    const int slot = (position[b * position_stride] / div) % 3;
    group[(b * 3 + slot) * d + i % d] = x[i];
  }
}

__global__ void advance_position_kernel(int* position, int n) {
  pdl_wait();
  pdl_trigger();
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) position[i] += 1;
}

// The tensors zero_flagged_rows() clears: their first word and row length in words.
struct FlaggedRows {
  int32_t* data[kMaxZeroedTensors];
  long long row_words[kMaxZeroedTensors];
  int count;
};

// Block (b, i) clears row b of tensor i when flags[b] is set.
__global__ void zero_flagged_rows_kernel(FlaggedRows t, const int32_t* __restrict__ flags) {
  pdl_wait();
  pdl_trigger();
  const int b = blockIdx.x, i = blockIdx.y;
  if (!flags[b]) return;
  const long long n = t.row_words[i];
  int32_t* row = t.data[i] + b * n;
  for (long long j = threadIdx.x; j < n; j += blockDim.x) row[j] = 0;
}

// ---- small-batch bf16 products (decode_product) ----

constexpr int kProductWarps = 8;  // output rows (or gate pairs) per block

__device__ __forceinline__ void add_bf16x8(float* acc, const uint4 w, const float* x) {
  float wf[8];
  unpack_bf16x8(w, wf);
#pragma unroll
  for (int i = 0; i < 8; i++) *acc = fmaf(wf[i], x[i], *acc);  // the order of the pairs as before
}

// y[b, n] = sum_k bf16(x[b, k]) W[n, k] + bias[n], or with `gate` (N = 2F):
// g[b, u] = silu(a) * c with a = row u, c = row F + u (biases included).
// x (rows x K, rounded to bf16) is staged in shared memory; each warp walks its
// weight row(s) 8 bf16 (16 bytes) at a time, lanes interleaved for coalescing.
// With kChunks > 0 (K <= 256 kChunks) a lane loads all its weight words into
// registers first, before x is staged: the weights do not depend on the
// previous kernel's output, so their loads overlap the staging and the
// product waits one memory round trip, not one per chunk. The sums run in the
// same order either way.
template <int kChunks>
__global__ void small_batch_product_kernel(const float* __restrict__ x, const bf16* __restrict__ W,
                                           const float* __restrict__ bias, float* __restrict__ y, int rows,
                                           int K, int N, bool gate) {
  extern __shared__ float xs[];  // [rows, K]
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int outputs = gate ? N / 2 : N;
  const int out = blockIdx.x * kProductWarps + warp;
  const bool active = out < outputs;
  const int chunks = K / 8;
  const uint4* wa = reinterpret_cast<const uint4*>(W + (long long)(active ? out : 0) * K);
  const uint4* wc = gate ? reinterpret_cast<const uint4*>(W + (long long)((active ? out : 0) + outputs) * K) : nullptr;
  constexpr int kHeld = kChunks > 0 ? kChunks : 1;
  uint4 held_a[kHeld], held_c[kHeld];
  if constexpr (kChunks > 0) {
#pragma unroll
    for (int i = 0; i < kChunks; i++) {
      const int chunk = lane + 32 * i;
      const bool load = active && chunk < chunks;
      held_a[i] = load ? wa[chunk] : make_uint4(0, 0, 0, 0);
      held_c[i] = load && gate ? wc[chunk] : make_uint4(0, 0, 0, 0);
    }
  }
  pdl_wait();  // x comes from the kernel before; the weights did not
  pdl_trigger();
  for (int i = threadIdx.x; i < rows * K; i += blockDim.x) xs[i] = round_to_bf16(x[i]);
  __syncthreads();
  if (!active) return;
  float acc_a[kSmallBatch], acc_c[kSmallBatch];
#pragma unroll
  for (int b = 0; b < kSmallBatch; b++) acc_a[b] = acc_c[b] = 0.0f;
  auto accumulate = [&](int chunk, const uint4 va, const uint4 vc) {
#pragma unroll
    for (int b = 0; b < kSmallBatch; b++) {
      if (b >= rows) break;
      add_bf16x8(&acc_a[b], va, xs + b * K + chunk * 8);
      if (gate) add_bf16x8(&acc_c[b], vc, xs + b * K + chunk * 8);
    }
  };
  if constexpr (kChunks > 0) {
#pragma unroll
    for (int i = 0; i < kChunks; i++) {
      const int chunk = lane + 32 * i;
      if (chunk < chunks) accumulate(chunk, held_a[i], held_c[i]);
    }
  } else {
    for (int chunk = lane; chunk < chunks; chunk += 32)
      accumulate(chunk, wa[chunk], gate ? wc[chunk] : make_uint4(0, 0, 0, 0));
  }
#pragma unroll
  for (int b = 0; b < kSmallBatch; b++) {
    if (b >= rows) break;
    const float a = warp_sum(acc_a[b]) + (bias ? bias[out] : 0.0f);
    if (!gate) {
      if (lane == 0) y[(long long)b * N + out] = a;
    } else {
      const float c = warp_sum(acc_c[b]) + (bias ? bias[out + outputs] : 0.0f);
      if (lane == 0) y[(long long)b * outputs + out] = a * sigmoid(a) * c;
    }
  }
}

}  // namespace

Tensor qkv_rope_step(const Tensor& qkv, int64_t heads, const Tensor& position, int64_t div, Tensor& k_dst,
                     Tensor& v_dst) {
  const int64_t B = qkv.size(0), HD = qkv.size(1) / 3, D = HD / heads, half = D / 2;
  IFLAME_CHECK(D % 4 == 0 && half <= kMaxHalf, "qkv_rope_step: head dim ", D,
               " must be a multiple of 4 and at most ", 2 * kMaxHalf);
  Frequencies freq{};
  const std::vector<float> host = ops::rope_frequencies(D);
  for (int64_t j = 0; j < half; j++) freq.f[j] = host[j];
  Tensor q = Tensor::empty({B, heads, D}, k_dst.dtype(), Device::CUDA);
  const long long pairs = B * heads * half;
  if (pairs == 0) return q;
  const int capacity = k_dst.ndim() == 4 ? static_cast<int>(k_dst.size(1)) : 0;
  IFLAME_DISPATCH_ACT(k_dst.dtype(), "qkv_rope_step", {
    launch_pdl(qkv_rope_kernel<T>, grid_stride_blocks(pairs, 256), 256, 0, qkv.data<float>(), q.data<T>(),
               k_dst.data<T>(), v_dst.data<T>(), static_cast<int>(B), static_cast<int>(heads),
               static_cast<int>(half), capacity, position.data<int32_t>(), position.numel() == 1 ? 0 : 1,
               static_cast<int>(div), freq);
  });
  return q;
}

Tensor swiglu_pair(const Tensor& ab) {
  Shape shape = ab.shape();
  const int64_t F = shape.back() / 2, rows = F > 0 ? ab.numel() / (2 * F) : 0;
  shape.back() = F;
  Tensor y = Tensor::empty(shape, DType::F32, Device::CUDA);
  if (rows * F == 0) return y;
  swiglu_pair_kernel<<<grid_stride_blocks(rows * F, 256), 256, 0, cuda_stream()>>>(ab.data<float>(),
                                                                                 y.data<float>(), rows, int(F));
  CUDA_CHECK_LAUNCH();
  return y;
}

void add_rms_norm(const Tensor& x, const Tensor& y, const Tensor& weight, float eps, Tensor& h, Tensor& n) {
  const int64_t d = x.size(-1), rows = d > 0 ? x.numel() / d : 0;
  h = Tensor::empty(x.shape(), DType::F32, Device::CUDA);
  n = Tensor::empty(x.shape(), DType::F32, Device::CUDA);
  if (rows == 0) return;
  const unsigned blocks = grid_stride_blocks(rows * 32, kNormThreads);
  auto launch = [&](auto kernel) {
    launch_pdl(kernel, blocks, kNormThreads, 0, x.data<float>(), y.data<float>(), weight.data<float>(),
               h.data<float>(), n.data<float>(), rows, int(d), eps);
  };
  if (d <= 4 * 32)
    launch(add_rms_norm_kernel<4>);
  else if (d <= 16 * 32)
    launch(add_rms_norm_kernel<16>);
  else if (d <= 32 * 32)
    launch(add_rms_norm_kernel<32>);
  else
    launch(add_rms_norm_kernel<0>);
}

void write_group_slot(Tensor& group, const Tensor& x, const Tensor& position, int64_t div) {
  const int64_t B = group.size(0), d = group.size(2);
  if (B * d == 0) return;
  launch_pdl(write_group_slot_kernel, grid_stride_blocks(B * d, 256), 256, 0, group.data<float>(), x.data<float>(),
             int(B), int(d), position.data<int32_t>(), position.numel() == 1 ? 0 : 1, int(div));
}

void advance_position(Tensor& position) {
  const int n = static_cast<int>(position.numel());
  launch_pdl(advance_position_kernel, grid_stride_blocks(n, 256), 256, 0, position.data<int32_t>(), n);
}

void zero_flagged_rows(const std::vector<Tensor>& tensors, const Tensor& flags) {
  const int64_t B = flags.numel();
  if (B == 0 || tensors.empty()) return;
  FlaggedRows t{};
  t.count = static_cast<int>(tensors.size());
  for (int i = 0; i < t.count; i++) {
    t.data[i] = static_cast<int32_t*>(tensors[i].raw_data());
    t.row_words[i] = tensors[i].numel() / B;
  }
  launch_pdl(zero_flagged_rows_kernel, dim3(unsigned(B), unsigned(t.count)), 256, 0, t, flags.data<int32_t>());
}

Tensor small_batch_product(const Tensor& x, const Tensor& w, const Tensor& bias, bool gate) {
  const int K = int(w.size(1)), N = int(w.size(0)), rows = int(x.numel() / K);
  const int outputs = gate ? N / 2 : N;
  Tensor y = Tensor::empty({rows, outputs}, DType::F32, Device::CUDA);
  const size_t shared = size_t(rows) * K * sizeof(float);
  IFLAME_CHECK(shared <= size_t(kSmallBatchShared), "decode_product: ", rows, " rows of ", K, " do not fit the kernel's shared memory");
  const unsigned blocks = unsigned((outputs + kProductWarps - 1) / kProductWarps);
  const float* b = bias.defined() ? bias.data<float>() : nullptr;
  auto launch = [&](auto kernel) {
    launch_pdl(kernel, blocks, kProductWarps * 32, shared, x.data<float>(), w.data<bf16>(), b, y.data<float>(), rows,
               K, N, gate);
  };
  const int chunks_per_lane = (K / 8 + 31) / 32;
  if (chunks_per_lane <= 2)
    launch(small_batch_product_kernel<2>);
  else if (chunks_per_lane <= 4)
    launch(small_batch_product_kernel<4>);
  else if (chunks_per_lane <= 8)
    launch(small_batch_product_kernel<8>);
  else
    launch(small_batch_product_kernel<0>);
  CUDA_CHECK_LAUNCH();
  return y;
}

}  // namespace iflame::infer::cuda
