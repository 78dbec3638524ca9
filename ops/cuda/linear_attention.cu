// cuda/linear_attention.cu: chunked decayed linear attention for head dim 32,
// the entry points and the f32-arithmetic kernels, and the one-token decoding step.
//
// Which kernels run: bf16 q/k/v (16-byte aligned, the usual case) go to the
// tensor-core kernel of ops/cuda/linear_attention_bf16.cu (mma.sync bf16 with f32
// accumulation and an f32 state); the kernel choice linear_attention_mma off
// (ops/kernel_choices.h) sends them here instead. f32 q/k/v always run the kernel of this file, which is
// f32 arithmetic throughout (the f32 golden tests depend on it).
//
// Every pass, forward and backward, is one "decayed causal product"
//   out_p = sum_{p' <= p} exp(-s (p - p')) (a_p . b_p') c_p'
// over positions p = t or, reversed, p = T-1-t (see cpu/linear_attention.cpp,
// whose chunked function is this kernel's algorithm step for step):
//   o  = product(q, k, v)             dq = product(do, v, k)
//   dk = reversed product(v, do, q)   dv = reversed product(k, q, do)
// One block of 256 threads per (b, h) and pass walks the sequence in chunks of 64
// positions: the chunk's rows of a, b, c go to shared memory, the masked decayed
// 64 x 64 score matrix of the chunk is formed there, and the 32 x 32 state
// M = sum_{p' before the chunk} exp(-s (c0-1-p')) b_p'^T c_p' carries everything
// earlier. The backward runs its three passes as one launch (grid rows 0..2).
// Storage f32 or bf16, arithmetic and the state f32.
#include <cmath>

#include "core/cuda_check.h"
#include "ops/cuda/attention_util.cuh"
#include "ops/cuda/linear_attention_bf16.h"
#include "ops/cuda/pdl.cuh"
#include "ops/linear_attention.h"

namespace iflame::ops::cuda {

using namespace attention;  // attention_util.cuh

namespace {

constexpr int kChunk = 64;          // positions per chunk
constexpr int kThreads = 256;       // 8 warps
constexpr int kWarps = kThreads / 32;
constexpr int kRowsPerWarp = kChunk / kWarps;        // 8 chunk rows per warp
constexpr int kStateRowsPerWarp = kHeadDim / kWarps;  // 4 state rows per warp
using linear_bf16::pack_slopes;
using linear_bf16::ProductPass;
using linear_bf16::ProductPasses;
using linear_bf16::Slopes;
static_assert(kChunk == 64 && kHeadDim == 32, "the thread mapping below assumes 64 x 32 tiles");

// grid (B*H, number of passes), kThreads threads.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    decayed_causal_product_kernel(ProductPasses<T> passes, Slopes slopes, int T_len, int H) {
  __shared__ float a_s[kChunk][kHeadDim];
  __shared__ float b_s[kChunk][kHeadDim + 1];  // padded: in step 1 each lane reads its own row
  __shared__ float c_s[kChunk][kHeadDim];
  __shared__ float scores[kChunk][kChunk];
  __shared__ float state[kHeadDim][kHeadDim];  // M[e][d], e indexes b, d indexes c
  __shared__ float decay[kChunk + 1];          // decay[n] = exp(-s n)

  // (Selected by branches: indexing the parameter array with blockIdx.y would copy it to local memory.)
  const ProductPass<T> job = blockIdx.y == 0   ? passes.pass[0]
                             : blockIdx.y == 1 ? passes.pass[1]
                                               : passes.pass[2];
  const int b = blockIdx.x / H, h = blockIdx.x % H;
  const long long row_stride = (long long)H * kHeadDim;
  const long long head = (long long)b * T_len * row_stride + (long long)h * kHeadDim;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const float slope = slopes.s[h];

  for (int i = threadIdx.x; i <= kChunk; i += kThreads) decay[i] = expf(-slope * (float)i);
  for (int i = threadIdx.x; i < kHeadDim * kHeadDim; i += kThreads) (&state[0][0])[i] = 0.0f;

  for (int c0 = 0; c0 < T_len; c0 += kChunk) {
    const int len = min(kChunk, T_len - c0);
    __syncthreads();  // the previous chunk (or the initialisation) is complete
    for (int idx = threadIdx.x; idx < kChunk * kHeadDim; idx += kThreads) {
      const int r = idx / kHeadDim, d = idx % kHeadDim;
      float av = 0.0f, bv = 0.0f, cv = 0.0f;
      if (r < len) {
        const int p = c0 + r;
        const long long at = head + (job.reverse ? T_len - 1 - p : p) * row_stride + d;
        av = load_float(job.a + at);
        bv = load_float(job.b + at);
        cv = load_float(job.c + at);
      }
      a_s[r][d] = av;
      b_s[r][d] = bv;
      c_s[r][d] = cv;
    }
    __syncthreads();

    // 1. scores[r][j] = exp(-s (r-j)) (a_r . b_j) for j <= r, else 0.
    //    Warp w: rows 8w..8w+7; lane: columns lane and lane + 32.
    {
      float lo[kRowsPerWarp], hi[kRowsPerWarp];
#pragma unroll
      for (int rr = 0; rr < kRowsPerWarp; rr++) lo[rr] = hi[rr] = 0.0f;
#pragma unroll 8
      for (int e = 0; e < kHeadDim; e++) {
        const float b_lo = b_s[lane][e], b_hi = b_s[lane + 32][e];
#pragma unroll
        for (int rr = 0; rr < kRowsPerWarp; rr++) {
          const float x = a_s[warp * kRowsPerWarp + rr][e];
          lo[rr] = fmaf(x, b_lo, lo[rr]);
          hi[rr] = fmaf(x, b_hi, hi[rr]);
        }
      }
#pragma unroll
      for (int rr = 0; rr < kRowsPerWarp; rr++) {
        const int r = warp * kRowsPerWarp + rr;
        scores[r][lane] = lane <= r ? lo[rr] * decay[r - lane] : 0.0f;
        scores[r][lane + 32] = lane + 32 <= r ? hi[rr] * decay[r - lane - 32] : 0.0f;
      }
    }
    __syncthreads();

    // 2. out_r = sum_{j <= r} scores[r][j] c_j + exp(-s (r+1)) a_r M.
    //    Warp w: rows 8w..8w+7; lane: column d.
    {
      float inside[kRowsPerWarp], before[kRowsPerWarp];
#pragma unroll
      for (int rr = 0; rr < kRowsPerWarp; rr++) inside[rr] = before[rr] = 0.0f;
      const int last_row = warp * kRowsPerWarp + kRowsPerWarp - 1;  // scores beyond it are 0
      for (int j = 0; j <= last_row; j++) {
        const float c = c_s[j][lane];
#pragma unroll
        for (int rr = 0; rr < kRowsPerWarp; rr++)
          inside[rr] = fmaf(scores[warp * kRowsPerWarp + rr][j], c, inside[rr]);
      }
#pragma unroll 8
      for (int e = 0; e < kHeadDim; e++) {
        const float m = state[e][lane];
#pragma unroll
        for (int rr = 0; rr < kRowsPerWarp; rr++)
          before[rr] = fmaf(a_s[warp * kRowsPerWarp + rr][e], m, before[rr]);
      }
#pragma unroll
      for (int rr = 0; rr < kRowsPerWarp; rr++) {
        const int r = warp * kRowsPerWarp + rr;
        if (r < len) {
          const int p = c0 + r;
          const long long at = head + (job.reverse ? T_len - 1 - p : p) * row_stride + lane;
          store_float(job.out + at, inside[rr] + decay[r + 1] * before[rr]);
        }
      }
    }
    __syncthreads();

    // 3. M <- exp(-s len) M + sum_{j < len} exp(-s (len-1-j)) b_j^T c_j.
    //    Warp w: state rows 4w..4w+3; lane: column d. Each thread updates only its own entries.
    {
      float sum[kStateRowsPerWarp];
#pragma unroll
      for (int ee = 0; ee < kStateRowsPerWarp; ee++) sum[ee] = 0.0f;
      for (int j = 0; j < len; j++) {
        const float c = c_s[j][lane] * decay[len - 1 - j];
#pragma unroll
        for (int ee = 0; ee < kStateRowsPerWarp; ee++)
          sum[ee] = fmaf(b_s[j][warp * kStateRowsPerWarp + ee], c, sum[ee]);
      }
#pragma unroll
      for (int ee = 0; ee < kStateRowsPerWarp; ee++) {
        const int e = warp * kStateRowsPerWarp + ee;
        state[e][lane] = decay[len] * state[e][lane] + sum[ee];
      }
    }
  }
}

// One token: S = exp(-s) S + k^T v, o = q S. One warp per (b, h); lane = column d.
// `slopes` holds the decays exp(-s) here, not the slopes.
template <typename T>
__global__ void linear_attention_step_kernel(const T* __restrict__ q, const T* __restrict__ k,
                                             const T* __restrict__ v, float* __restrict__ state,
                                             T* __restrict__ o, Slopes slopes, int H) {
  const int bh = blockIdx.x, h = bh % H, lane = threadIdx.x;
  const long long row = (long long)bh * kHeadDim;
  // exp(-slope) as the host computes it (see the launcher): CUDA's expf may be
  // an ulp off, and decoding raises the decay to the power of thousands of steps.
  const float decay = slopes.s[h];
  float* S = state + (long long)bh * kHeadDim * kHeadDim;
  pdl_wait();  // launched with launch_pdl (pdl.cuh): q, k, v come from the kernel before
  pdl_trigger();
  // The whole state column first: its 32 loads go out at once.
  float column[kHeadDim];
#pragma unroll
  for (int e = 0; e < kHeadDim; e++) column[e] = S[e * kHeadDim + lane];
  const float q_mine = load_float(q + row + lane), k_mine = load_float(k + row + lane);
  const float v_d = load_float(v + row + lane);
  const double out = linear_state_step(S, column, decay, q_mine, k_mine, v_d, lane);  // attention_util.cuh
  store_float(o + row + lane, static_cast<float>(out));
}

// Runs `count` passes for q-shaped tensors [B, T, H, 32].
template <typename T>
void launch_products(const ProductPasses<T>& passes, int count, const Tensor& like,
                     const Slopes& slopes) {
  const long long bh = like.size(0) * like.size(2);
  IFLAME_CHECK(bh <= 0x7fffffffLL && like.size(1) < (1LL << 30),
               "linear attention: tensor too large for the CUDA kernel: ", like.describe());
  if (bh == 0) return;
  const dim3 grid(static_cast<unsigned>(bh), count);
  decayed_causal_product_kernel<T><<<grid, kThreads, 0, cuda_stream()>>>(
      passes, slopes, static_cast<int>(like.size(1)), static_cast<int>(like.size(2)));
  CUDA_CHECK_LAUNCH();
}

}  // namespace

Tensor linear_attention_forward(const Tensor& q, const Tensor& k, const Tensor& v,
                                const std::vector<float>& slopes) {
  const char* op = "linear_attention_forward";
  check_head_dim(op, q);
  if (linear_bf16::usable({&q, &k, &v})) return linear_bf16::forward(q, k, v, slopes);
  // The product kernel takes the slopes (it builds its table of exp(-s n) itself);
  // only the decoding step takes the decays exp(-s).
  const Slopes packed = pack_slopes(op, slopes);
  Tensor o = Tensor::empty(q.shape(), q.dtype(), Device::CUDA);
  with_storage_type(q.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    ProductPasses<T> passes{};
    passes.pass[0] = {q.data<T>(), k.data<T>(), v.data<T>(), o.data<T>(), 0};
    launch_products(passes, 1, q, packed);
  });
  return o;
}

void linear_attention_backward(const Tensor& grad_o, const Tensor& q, const Tensor& k,
                               const Tensor& v, const std::vector<float>& slopes, Tensor& grad_q,
                               Tensor& grad_k, Tensor& grad_v) {
  const char* op = "linear_attention_backward";
  check_head_dim(op, q);
  if (linear_bf16::usable({&grad_o, &q, &k, &v})) {
    linear_bf16::backward(grad_o, q, k, v, slopes, grad_q, grad_k, grad_v);
    return;
  }
  const Slopes packed = pack_slopes(op, slopes);
  grad_q = Tensor::empty(q.shape(), q.dtype(), Device::CUDA);
  grad_k = Tensor::empty(k.shape(), k.dtype(), Device::CUDA);
  grad_v = Tensor::empty(v.shape(), v.dtype(), Device::CUDA);
  with_storage_type(q.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    const T *Q = q.data<T>(), *K = k.data<T>(), *V = v.data<T>(), *dO = grad_o.data<T>();
    ProductPasses<T> passes{};
    passes.pass[0] = {dO, V, K, grad_q.data<T>(), 0};  // dq_t = sum_{j<=t} w (do_t . v_j) k_j
    passes.pass[1] = {V, dO, Q, grad_k.data<T>(), 1};  // dk_j = sum_{t>=j} w (v_j . do_t) q_t
    passes.pass[2] = {K, Q, dO, grad_v.data<T>(), 1};  // dv_j = sum_{t>=j} w (k_j . q_t) do_t
    launch_products(passes, 3, q, packed);
  });
}

Tensor linear_attention_step(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& state,
                             const std::vector<float>& slopes) {
  const char* op = "linear_attention_step";
  check_head_dim(op, q);
  // The kernel takes the decays exp(-slope), computed here exactly as the CPU
  // reference computes them (std::exp on the float slope).
  std::vector<float> decays(slopes.size());
  for (size_t h = 0; h < slopes.size(); h++) decays[h] = std::exp(-slopes[h]);
  const Slopes packed = pack_slopes(op, decays);
  Tensor o = Tensor::empty(q.shape(), q.dtype(), Device::CUDA);
  const long long bh = q.size(0) * q.size(1);
  IFLAME_CHECK(bh <= 0x7fffffffLL, op, ": too many sequences x heads: ", q.describe());
  if (bh == 0) return o;
  with_storage_type(q.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    launch_pdl(linear_attention_step_kernel<T>, static_cast<unsigned>(bh), 32, 0, q.data<T>(), k.data<T>(),
               v.data<T>(), state.data<float>(), o.data<T>(), packed, static_cast<int>(q.size(1)));
  });
  return o;
}

}  // namespace iflame::ops::cuda
