// cuda/causal_attention.cu: causal softmax attention for head dim 32, the
// entry points and the f32-arithmetic kernels.
//
// Which kernels run: bf16 q/k/v (16-byte aligned, the usual case) go to the
// tensor-core kernels of ops/cuda/flash_attention_bf16.cu (mma.sync bf16 with f32
// accumulation, P and dS rounded to bf16 as FlashAttention-2 does);
// the kernel choice flash_attention off (ops/kernel_choices.h) sends them here instead. f32
// q/k/v always run the kernels of this file, which are exact f32 arithmetic
// (the f32 golden tests depend on them).
//
// The kernels here: one thread per row, f32 FMA only (no tensor cores).
// Forward: one thread per query row (its q row and output accumulator in
// registers), 128 queries per block; keys and values stream through shared
// memory 64 at a time, and the softmax is computed online (running max and sum,
// rescaled once per chunk of 16 scores), so no T x T matrix ever exists.
// Scores are kept in log2 units (q pre-multiplied by scale * log2 e) so every
// exponential is one exp2f.
// Backward (recomputation, no atomics), three kernels:
//   1. Dvec_i = dO_i . O_i per query row;
//   2. dQ: one thread per query row, streaming key tiles like the forward and
//      rebuilding P_ij = exp(scale q_i.k_j - lse_i);
//   3. dK, dV: one thread per key row, streaming the query tiles that see it.
// Storage f32 or bf16, arithmetic f32.
#include <cmath>

#include "core/cuda_check.h"
#include "ops/causal_attention.h"
#include "ops/cuda/attention_util.cuh"
#include "ops/cuda/flash_attention_bf16.h"

namespace iflame::ops::cuda {

using namespace attention;  // attention_util.cuh

namespace {

constexpr int kRowsPerBlock = 128;  // threads per block, one query (or key) row each
constexpr int kTile = 64;           // rows staged in shared memory at a time
constexpr int kChunk = 16;          // forward: scores per online-softmax rescaling
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

struct AttentionShape {
  int B, H, Tq, Tk;
  long long row_stride;  // elements between consecutive positions of one head: H * D
};

// (b, 0, h, 0) of a [B, T, H, D] tensor.
template <typename T>
__device__ __forceinline__ const T* head_start(const T* p, int b, int h, int T_len,
                                               const AttentionShape& s) {
  return p + (long long)b * T_len * s.row_stride + (long long)h * kHeadDim;
}
template <typename T>
__device__ __forceinline__ T* head_start(T* p, int b, int h, int T_len, const AttentionShape& s) {
  return p + (long long)b * T_len * s.row_stride + (long long)h * kHeadDim;
}

// Copies rows [first, first + kTile) of one head into shared memory as floats,
// zeros for rows >= end. Coalesced: consecutive threads read consecutive elements.
template <typename T>
__device__ __forceinline__ void stage_rows(float (*dst)[kHeadDim], const T* head, int first,
                                           int end, long long row_stride) {
  for (int idx = threadIdx.x; idx < kTile * kHeadDim; idx += blockDim.x) {
    const int r = idx / kHeadDim, d = idx % kHeadDim;
    const int row = first + r;
    dst[r][d] = row < end ? load_float(head + row * row_stride + d) : 0.0f;
  }
}

template <typename T>
__device__ __forceinline__ void load_row(float (&dst)[kHeadDim], const T* src, float factor) {
#pragma unroll
  for (int d = 0; d < kHeadDim; d++) dst[d] = load_float(src + d) * factor;
}

// a . shared_row, with four partial sums so the FMAs are not one 32-long dependency chain.
__device__ __forceinline__ float dot_row(const float (&a)[kHeadDim], const float* shared_row) {
  const float4* r = reinterpret_cast<const float4*>(shared_row);
  float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
#pragma unroll
  for (int d4 = 0; d4 < kHeadDim / 4; d4++) {
    const float4 x = r[d4];
    s0 = fmaf(a[4 * d4 + 0], x.x, s0);
    s1 = fmaf(a[4 * d4 + 1], x.y, s1);
    s2 = fmaf(a[4 * d4 + 2], x.z, s2);
    s3 = fmaf(a[4 * d4 + 3], x.w, s3);
  }
  return (s0 + s1) + (s2 + s3);
}

// acc += w * shared_row
__device__ __forceinline__ void add_scaled_row(float (&acc)[kHeadDim], float w,
                                               const float* shared_row) {
  const float4* r = reinterpret_cast<const float4*>(shared_row);
#pragma unroll
  for (int d4 = 0; d4 < kHeadDim / 4; d4++) {
    const float4 x = r[d4];
    acc[4 * d4 + 0] = fmaf(w, x.x, acc[4 * d4 + 0]);
    acc[4 * d4 + 1] = fmaf(w, x.y, acc[4 * d4 + 1]);
    acc[4 * d4 + 2] = fmaf(w, x.z, acc[4 * d4 + 2]);
    acc[4 * d4 + 3] = fmaf(w, x.w, acc[4 * d4 + 3]);
  }
}

// grid (query tiles, B*H); query tiles run last-first since later queries see more keys.
template <typename T>
__global__ void __launch_bounds__(kRowsPerBlock)
    causal_attention_forward_kernel(const T* __restrict__ q, const T* __restrict__ k,
                                    const T* __restrict__ v, T* __restrict__ o,
                                    float* __restrict__ lse, AttentionShape s, float scale) {
  __shared__ __align__(16) float k_tile[kTile][kHeadDim];
  __shared__ __align__(16) float v_tile[kTile][kHeadDim];

  const int b = blockIdx.y / s.H, h = blockIdx.y % s.H;
  const int offset = s.Tk - s.Tq;  // query i sees keys 0 .. i + offset
  const int first_query = (gridDim.x - 1 - blockIdx.x) * kRowsPerBlock;
  const int query = first_query + threadIdx.x;
  const bool active = query < s.Tq;
  const int keys_seen = active ? query + offset + 1 : 0;
  const int block_keys = min(s.Tq, first_query + kRowsPerBlock) + offset;  // most any thread sees

  const T* k_head = head_start(k, b, h, s.Tk, s);
  const T* v_head = head_start(v, b, h, s.Tk, s);

  float q_row[kHeadDim];  // in log2 units: exp2(q_row . k) = exp(scale q . k)
  if (active) {
    load_row(q_row, head_start(q, b, h, s.Tq, s) + query * s.row_stride, scale * kLog2e);
  } else {
#pragma unroll
    for (int d = 0; d < kHeadDim; d++) q_row[d] = 0.0f;
  }
  float acc[kHeadDim];
#pragma unroll
  for (int d = 0; d < kHeadDim; d++) acc[d] = 0.0f;
  float row_max = -INFINITY, row_sum = 0.0f;

  for (int key0 = 0; key0 < block_keys; key0 += kTile) {
    __syncthreads();  // everyone is done with the previous tile
    stage_rows(k_tile, k_head, key0, s.Tk, s.row_stride);
    stage_rows(v_tile, v_head, key0, s.Tk, s.row_stride);
    __syncthreads();
    const int n = min(kTile, keys_seen - key0);  // keys of this tile this query sees (may be <= 0)
    for (int c = 0; c < n; c += kChunk) {
      // Key 0 is in the first chunk and every query sees it, so row_max is finite
      // from the first chunk on and masked scores (-inf) give p = 0, never NaN.
      float score[kChunk];
      float chunk_max = -INFINITY;
#pragma unroll
      for (int jj = 0; jj < kChunk; jj++) {
        const float x = dot_row(q_row, k_tile[c + jj]);
        score[jj] = (c + jj < n) ? x : -INFINITY;
        chunk_max = fmaxf(chunk_max, score[jj]);
      }
      const float new_max = fmaxf(row_max, chunk_max);
      const float correction = exp2f(row_max - new_max);  // 0 on the first chunk
      row_sum *= correction;
#pragma unroll
      for (int d = 0; d < kHeadDim; d++) acc[d] *= correction;
#pragma unroll
      for (int jj = 0; jj < kChunk; jj++) {
        const float p = exp2f(score[jj] - new_max);
        row_sum += p;
        add_scaled_row(acc, p, v_tile[c + jj]);
      }
      row_max = new_max;
    }
  }

  if (active) {
    const float inv_sum = 1.0f / row_sum;
    T* o_row = head_start(o, b, h, s.Tq, s) + query * s.row_stride;
#pragma unroll
    for (int d = 0; d < kHeadDim; d++) store_float(o_row + d, acc[d] * inv_sum);
    lse[((long long)b * s.H + h) * s.Tq + query] = (row_max + log2f(row_sum)) * kLn2;
  }
}

// dvec [B, H, Tq] = rowsum(dO * O); one thread per (b, t, h) row.
template <typename T>
__global__ void attention_row_dot_kernel(const T* __restrict__ grad_o, const T* __restrict__ o,
                                         float* __restrict__ dvec, AttentionShape s) {
  attention_row_dots(s.B, s.Tq, s.H, dvec, [&](long long r) {
    const T* g = grad_o + r * kHeadDim;
    const T* x = o + r * kHeadDim;
    float sum = 0.0f;
#pragma unroll
    for (int d = 0; d < kHeadDim; d++) sum = fmaf(load_float(g + d), load_float(x + d), sum);
    return sum;
  });
}

// dQ_i = scale sum_j P_ij (dO_i . v_j - Dvec_i) k_j. Same grid and tiling as the forward.
template <typename T>
__global__ void __launch_bounds__(kRowsPerBlock)
    causal_attention_backward_dq_kernel(const T* __restrict__ grad_o, const T* __restrict__ q,
                                        const T* __restrict__ k, const T* __restrict__ v,
                                        const float* __restrict__ lse,
                                        const float* __restrict__ dvec, T* __restrict__ grad_q,
                                        AttentionShape s, float scale) {
  __shared__ __align__(16) float k_tile[kTile][kHeadDim];
  __shared__ __align__(16) float v_tile[kTile][kHeadDim];

  const int b = blockIdx.y / s.H, h = blockIdx.y % s.H;
  const int offset = s.Tk - s.Tq;
  const int first_query = (gridDim.x - 1 - blockIdx.x) * kRowsPerBlock;
  const int query = first_query + threadIdx.x;
  const bool active = query < s.Tq;
  const int keys_seen = active ? query + offset + 1 : 0;
  const int block_keys = min(s.Tq, first_query + kRowsPerBlock) + offset;

  const T* k_head = head_start(k, b, h, s.Tk, s);
  const T* v_head = head_start(v, b, h, s.Tk, s);

  float q_row[kHeadDim], do_row[kHeadDim], dq[kHeadDim];
  float lse_log2 = 0.0f, dvec_i = 0.0f;
#pragma unroll
  for (int d = 0; d < kHeadDim; d++) q_row[d] = do_row[d] = dq[d] = 0.0f;
  if (active) {
    const long long row = query * s.row_stride;
    load_row(q_row, head_start(q, b, h, s.Tq, s) + row, scale * kLog2e);
    load_row(do_row, head_start(grad_o, b, h, s.Tq, s) + row, 1.0f);
    const long long stat = ((long long)b * s.H + h) * s.Tq + query;
    lse_log2 = lse[stat] * kLog2e;
    dvec_i = dvec[stat];
  }

  for (int key0 = 0; key0 < block_keys; key0 += kTile) {
    __syncthreads();
    stage_rows(k_tile, k_head, key0, s.Tk, s.row_stride);
    stage_rows(v_tile, v_head, key0, s.Tk, s.row_stride);
    __syncthreads();
    const int n = min(kTile, keys_seen - key0);
    for (int j = 0; j < n; j++) {
      const float p = exp2f(dot_row(q_row, k_tile[j]) - lse_log2);
      const float ds = p * (dot_row(do_row, v_tile[j]) - dvec_i);
      add_scaled_row(dq, ds, k_tile[j]);
    }
  }

  if (active) {
    T* out = head_start(grad_q, b, h, s.Tq, s) + query * s.row_stride;
#pragma unroll
    for (int d = 0; d < kHeadDim; d++) store_float(out + d, dq[d] * scale);
  }
}

// dV_j = sum_i P_ij dO_i, dK_j = scale sum_i P_ij (dO_i . v_j - Dvec_i) q_i, over the
// queries i >= j - offset. grid (key tiles, B*H); tile 0 (most queries) runs first.
template <typename T>
__global__ void __launch_bounds__(kRowsPerBlock)
    causal_attention_backward_dkdv_kernel(const T* __restrict__ grad_o, const T* __restrict__ q,
                                          const T* __restrict__ k, const T* __restrict__ v,
                                          const float* __restrict__ lse,
                                          const float* __restrict__ dvec, T* __restrict__ grad_k,
                                          T* __restrict__ grad_v, AttentionShape s, float scale) {
  __shared__ __align__(16) float q_tile[kTile][kHeadDim];
  __shared__ __align__(16) float do_tile[kTile][kHeadDim];
  __shared__ float lse_log2_tile[kTile];
  __shared__ float dvec_tile[kTile];

  const int b = blockIdx.y / s.H, h = blockIdx.y % s.H;
  const int offset = s.Tk - s.Tq;  // key j is seen by queries i >= j - offset
  const int first_key = blockIdx.x * kRowsPerBlock;
  const int key = first_key + threadIdx.x;
  const bool active = key < s.Tk;

  const T* q_head = head_start(q, b, h, s.Tq, s);
  const T* do_head = head_start(grad_o, b, h, s.Tq, s);
  const long long stat0 = ((long long)b * s.H + h) * s.Tq;

  float k_row[kHeadDim], v_row[kHeadDim], dk[kHeadDim], dv[kHeadDim];
#pragma unroll
  for (int d = 0; d < kHeadDim; d++) k_row[d] = v_row[d] = dk[d] = dv[d] = 0.0f;
  if (active) {
    const long long row = key * s.row_stride;
    load_row(k_row, head_start(k, b, h, s.Tk, s) + row, scale * kLog2e);
    load_row(v_row, head_start(v, b, h, s.Tk, s) + row, 1.0f);
  }

  for (int query0 = max(0, first_key - offset); query0 < s.Tq; query0 += kTile) {
    __syncthreads();
    stage_rows(q_tile, q_head, query0, s.Tq, s.row_stride);
    stage_rows(do_tile, do_head, query0, s.Tq, s.row_stride);
    for (int r = threadIdx.x; r < kTile; r += blockDim.x) {
      const bool in = query0 + r < s.Tq;
      lse_log2_tile[r] = in ? lse[stat0 + query0 + r] * kLog2e : 0.0f;
      dvec_tile[r] = in ? dvec[stat0 + query0 + r] : 0.0f;
    }
    __syncthreads();
    const int start = active ? max(0, key - offset - query0) : kTile;
    const int end = min(kTile, s.Tq - query0);
    for (int i = start; i < end; i++) {
      const float p = exp2f(dot_row(k_row, q_tile[i]) - lse_log2_tile[i]);
      const float ds = p * (dot_row(v_row, do_tile[i]) - dvec_tile[i]);
      add_scaled_row(dv, p, do_tile[i]);
      add_scaled_row(dk, ds, q_tile[i]);
    }
  }

  if (active) {
    const long long row = key * s.row_stride;
    T* dk_out = head_start(grad_k, b, h, s.Tk, s) + row;
    T* dv_out = head_start(grad_v, b, h, s.Tk, s) + row;
#pragma unroll
    for (int d = 0; d < kHeadDim; d++) {
      store_float(dk_out + d, dk[d] * scale);
      store_float(dv_out + d, dv[d]);
    }
  }
}

AttentionShape shape_of(const char* op, const Tensor& q, const Tensor& k) {
  check_head_dim(op, q);
  check_attention_grid(op, q, k);
  AttentionShape s;
  s.B = static_cast<int>(q.size(0));
  s.Tq = static_cast<int>(q.size(1));
  s.H = static_cast<int>(q.size(2));
  s.Tk = static_cast<int>(k.size(1));
  s.row_stride = static_cast<long long>(s.H) * kHeadDim;
  return s;
}

unsigned tiles(int n) { return static_cast<unsigned>((n + kRowsPerBlock - 1) / kRowsPerBlock); }

}  // namespace

Tensor causal_attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, float scale,
                                Tensor* lse) {
  if (flash::usable({&q, &k, &v})) return flash::forward(q, k, v, scale, lse);
  const char* op = "causal_attention_forward";
  const AttentionShape s = shape_of(op, q, k);
  Tensor o = Tensor::empty(q.shape(), q.dtype(), Device::CUDA);
  Tensor lse_out = Tensor::empty({s.B, s.H, s.Tq}, DType::F32, Device::CUDA);
  if (s.B * s.H > 0) {
    const dim3 grid(tiles(s.Tq), s.B * s.H);
    with_storage_type(q.dtype(), op, [&](auto tag) {
      using T = decltype(tag);
      causal_attention_forward_kernel<T><<<grid, kRowsPerBlock, 0, cuda_stream()>>>(
          q.data<T>(), k.data<T>(), v.data<T>(), o.data<T>(), lse_out.data<float>(), s, scale);
      CUDA_CHECK_LAUNCH();
    });
  }
  if (lse) *lse = lse_out;
  return o;
}

void causal_attention_backward(const Tensor& grad_o, const Tensor& q, const Tensor& k,
                               const Tensor& v, const Tensor& o, const Tensor& lse, float scale,
                               Tensor& grad_q, Tensor& grad_k, Tensor& grad_v) {
  if (flash::usable({&grad_o, &q, &k, &v, &o})) {
    flash::backward(grad_o, q, k, v, o, lse, scale, grad_q, grad_k, grad_v);
    return;
  }
  const char* op = "causal_attention_backward";
  const AttentionShape s = shape_of(op, q, k);
  grad_q = Tensor::empty(q.shape(), q.dtype(), Device::CUDA);
  grad_k = Tensor::empty(k.shape(), k.dtype(), Device::CUDA);
  grad_v = Tensor::empty(v.shape(), v.dtype(), Device::CUDA);
  if (s.B * s.H == 0) return;
  Tensor dvec = Tensor::empty({s.B, s.H, s.Tq}, DType::F32, Device::CUDA);
  with_storage_type(q.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    const long long rows = (long long)s.B * s.Tq * s.H;
    attention_row_dot_kernel<T><<<blocks_for(rows, 256), 256, 0, cuda_stream()>>>(
        grad_o.data<T>(), o.data<T>(), dvec.data<float>(), s);
    CUDA_CHECK_LAUNCH();
    causal_attention_backward_dq_kernel<T>
        <<<dim3(tiles(s.Tq), s.B * s.H), kRowsPerBlock, 0, cuda_stream()>>>(
            grad_o.data<T>(), q.data<T>(), k.data<T>(), v.data<T>(), lse.data<float>(),
            dvec.data<float>(), grad_q.data<T>(), s, scale);
    CUDA_CHECK_LAUNCH();
    causal_attention_backward_dkdv_kernel<T>
        <<<dim3(tiles(s.Tk), s.B * s.H), kRowsPerBlock, 0, cuda_stream()>>>(
            grad_o.data<T>(), q.data<T>(), k.data<T>(), v.data<T>(), lse.data<float>(),
            dvec.data<float>(), grad_k.data<T>(), grad_v.data<T>(), s, scale);
    CUDA_CHECK_LAUNCH();
  });
}

}  // namespace iflame::ops::cuda
