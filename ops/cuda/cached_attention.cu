// cuda/cached_attention.cu: the cached attention step on the GPU (head dim 32).
//
// One block of 128 threads per (b, h). Thread t takes cache rows t, t+128, ...
// (each row's K and V read as 16-byte words)
// and keeps its own online softmax (running max m, sum l, accumulator acc[32] in
// registers); the block then merges the 128 partial results: M = max m,
// o = sum(exp(m - M) acc) / sum(exp(m - M) l). f32 arithmetic, storage f32 or bf16.
// Work per step is O(length) per head. When B * H is too small to fill the GPU
// (batch 1: 16 heads on 132 SMs), the rows are also split over `splits` blocks
// per head ("flash decoding"): each writes its block-merged (M, l, acc) to a
// small f32 workspace and a second kernel merges the splits the same way.
// Dead rows (cached_attention_at's `live` flags, read on the device): every
// block of such a row returns before loading anything; the block that writes
// the row's output (the only block, or the merging one when split) writes zeros.
#include <cmath>

#include "core/cuda_check.h"
#include "ops/cached_attention.h"
#include "ops/cuda/attention_util.cuh"
#include "ops/cuda/pdl.cuh"
#include "ops/decode_position.h"

namespace iflame::ops::cuda {

using namespace attention;  // attention_util.cuh

namespace {

constexpr int kThreads = 128;
constexpr float kLog2e = 1.4426950408889634f;

// One cache row of 32 values as floats. kVector: 16-byte loads (8 for an f32
// row, 4 for a bf16 row) where the caller checked the alignment; otherwise
// element by element. The same values either way.
template <bool kVector>
__device__ __forceinline__ void load_row(const float* __restrict__ p, float* out) {
  if constexpr (kVector) {
#pragma unroll
    for (int i = 0; i < kHeadDim / 4; i++) {
      const float4 w = reinterpret_cast<const float4*>(p)[i];
      out[4 * i] = w.x, out[4 * i + 1] = w.y, out[4 * i + 2] = w.z, out[4 * i + 3] = w.w;
    }
  } else {
#pragma unroll
    for (int d = 0; d < kHeadDim; d++) out[d] = p[d];
  }
}

template <bool kVector>
__device__ __forceinline__ void load_row(const bf16* __restrict__ p, float* out) {
  if constexpr (kVector) {
#pragma unroll
    for (int i = 0; i < kHeadDim / 8; i++) unpack_bf16x8(reinterpret_cast<const uint4*>(p)[i], out + 8 * i);
  } else {
#pragma unroll
    for (int d = 0; d < kHeadDim; d++) out[d] = load_float(p + d);
  }
}

template <typename T, bool kVector>
__global__ void __launch_bounds__(kThreads)
    cached_attention_kernel(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                            T* __restrict__ o, int H, int capacity, int length, const int* __restrict__ position,
                            int position_stride, int div, const int32_t* __restrict__ live, float scale_log2,
                            float* __restrict__ partial) {
  pdl_wait();  // launched with launch_pdl (ops/cuda/pdl.cuh): q and the newest cache row come from the kernel before
  pdl_trigger();
  const int bh = blockIdx.x, b = bh / H, h = bh % H, t = threadIdx.x;
  if (live && live[b] == 0) {  // a dead row (the whole block alike): nothing read; zeros out, or by the merge
    if (partial == nullptr && t < kHeadDim) store_float(o + (long long)bh * kHeadDim + t, 0.0f);
    return;
  }
  // The length comes from the host, or from the decoding position counter
  // (ops/decode_position.h; shared, or one per row): rows 0 .. position / div, at most the capacity.
  if (position) length = min(position[b * position_stride] / div + 1, capacity);
  __shared__ float part_m[kThreads], part_l[kThreads];
  __shared__ float part_acc[kThreads][kHeadDim + 1];
  const long long row_stride = (long long)H * kHeadDim;
  const T* k_head = k + (long long)b * capacity * row_stride + (long long)h * kHeadDim;
  const T* v_head = v + (long long)b * capacity * row_stride + (long long)h * kHeadDim;

  float qr[kHeadDim];
#pragma unroll
  for (int d = 0; d < kHeadDim; d++) qr[d] = load_float(q + (long long)bh * kHeadDim + d) * scale_log2;
  float acc[kHeadDim];
#pragma unroll
  for (int d = 0; d < kHeadDim; d++) acc[d] = 0.0f;
  float m = -INFINITY, l = 0.0f;
  // This block's rows: all of them, or its share when split (blockIdx.y of gridDim.y).
  const int splits = gridDim.y, chunk = (length + splits - 1) / splits;
  const int first = blockIdx.y * chunk, end = min(length, first + chunk);
  for (int j = first + t; j < end; j += kThreads) {
    float kr[kHeadDim], vr[kHeadDim];
    load_row<kVector>(k_head + j * row_stride, kr);
    load_row<kVector>(v_head + j * row_stride, vr);  // issued with K's loads: one round trip per row
    online_softmax_row(qr, kr, vr, m, l, acc);
  }
  part_m[t] = m;
  __syncthreads();
  // Without a split, length >= 1 gives thread 0 a finite m; a split may hold no
  // rows at all: then every weight and everything below is 0.
  float M;
  const float w = merge_weight(part_m, kThreads, m, M);
  part_l[t] = l * w;
#pragma unroll
  for (int d = 0; d < kHeadDim; d++) part_acc[t][d] = acc[d] * w;
  __syncthreads();
  if (t < kHeadDim) {
    float sum = 0.0f, total = 0.0f;
    for (int i = 0; i < kThreads; i++) {
      sum += part_acc[i][t];
      total += part_l[i];
    }
    if (partial == nullptr) {
      store_float(o + (long long)bh * kHeadDim + t, sum / total);
    } else {  // [B*H, splits, 2 + D]: M, l, acc
      float* mine = partial + ((long long)bh * splits + blockIdx.y) * (kHeadDim + 2);
      mine[2 + t] = sum;
      if (t == 0) {
        mine[0] = M;
        mine[1] = total;
      }
    }
  }
}

// Merges the splits of one (b, h): thread d computes output column d.
// A dead row's splits wrote nothing: its output is zeros.
template <typename T>
__global__ void cached_attention_combine_kernel(const float* __restrict__ partial, T* __restrict__ o, int splits,
                                                int H, const int32_t* __restrict__ live) {
  pdl_wait();
  pdl_trigger();
  const int bh = blockIdx.x, d = threadIdx.x;
  if (live && live[bh / H] == 0) {
    store_float(o + (long long)bh * kHeadDim + d, 0.0f);
    return;
  }
  const float* part = partial + (long long)bh * splits * (kHeadDim + 2);
  float M = -INFINITY;
  for (int s = 0; s < splits; s++) M = fmaxf(M, part[s * (kHeadDim + 2)]);
  float sum = 0.0f, total = 0.0f;
  for (int s = 0; s < splits; s++) {
    const float m = part[s * (kHeadDim + 2)];
    if (m == -INFINITY) continue;  // a split without rows
    const float w = exp2f(m - M);
    total += w * part[s * (kHeadDim + 2) + 1];
    sum += w * part[s * (kHeadDim + 2) + 2 + d];
  }
  store_float(o + (long long)bh * kHeadDim + d, sum / total);
}

// Blocks per head: enough (B*H*splits) to give every SM two blocks, each
// split keeping at least ~512 rows of the capacity, at most 32.
int choose_splits(long long bh, long long capacity) {
  static const int sms = [] {
    int dev = 0, n = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev));
    return n;
  }();
  long long want = (2LL * sms + bh - 1) / bh;
  long long by_rows = capacity / 512;
  long long s = want < by_rows ? want : by_rows;
  return static_cast<int>(s < 1 ? 1 : s > 32 ? 32 : s);
}

}  // namespace

namespace {
Tensor launch(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache, int64_t length, const int* position,
              int position_stride, int div, const int32_t* live, float scale, const char* op) {
  check_head_dim(op, q);
  const long long bh = q.size(0) * q.size(1);
  IFLAME_CHECK(bh <= 0x7fffffffLL && k_cache.size(1) < (1LL << 30), op, ": too large: ", k_cache.describe());
  Tensor o = Tensor::empty(q.shape(), q.dtype(), Device::CUDA);
  if (bh == 0) return o;
  const int splits = choose_splits(bh, k_cache.size(1));
  Tensor partial;
  if (splits > 1) partial = Tensor::empty({bh, splits, kHeadDim + 2}, DType::F32, Device::CUDA);
  with_storage_type(q.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    const dim3 grid(static_cast<unsigned>(bh), static_cast<unsigned>(splits));
    // Rows are 32 values apart from any (b, h) start, so 16-byte aligned bases
    // make every row's loads 16-byte aligned.
    auto aligned = [](const Tensor& t) { return reinterpret_cast<uintptr_t>(t.raw_data()) % 16 == 0; };
    const bool vector = aligned(k_cache) && aligned(v_cache);
    launch_pdl(vector ? cached_attention_kernel<T, true> : cached_attention_kernel<T, false>, grid, kThreads, 0, q.data<T>(), k_cache.data<T>(), v_cache.data<T>(),
               o.data<T>(), static_cast<int>(q.size(1)), static_cast<int>(k_cache.size(1)),
               static_cast<int>(length), position, position_stride, div, live, scale * kLog2e,
               splits > 1 ? partial.data<float>() : nullptr);
    if (splits > 1)
      launch_pdl(cached_attention_combine_kernel<T>, static_cast<unsigned>(bh), kHeadDim, 0, partial.data<float>(),
                 o.data<T>(), splits, static_cast<int>(q.size(1)), live);
  });
  return o;
}
}  // namespace

Tensor cached_attention_step(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                             int64_t length, float scale) {
  return launch(q, k_cache, v_cache, length, nullptr, 0, 1, nullptr, scale, "cached_attention_step");
}

Tensor cached_attention_at(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                           const Tensor& position, int64_t div, float scale, const int32_t* live) {
  return launch(q, k_cache, v_cache, 0, position.data<int32_t>(), position_stride(position),
                static_cast<int>(div), live, scale, "cached_attention_at");
}

}  // namespace iflame::ops::cuda
