// cuda/small_product.cu: decode_product and decode_product_swiglu for at most
// kSmallBatch rows (ops/small_product.h): a warp per output row reads W once.
// Launched with launch_pdl (pdl.cuh): the weight loads, which do not depend on
// the kernel before, overlap it.
#include "ops/cuda/elem_util.cuh"
#include "ops/cuda/pdl.cuh"
#include "ops/small_product.h"

namespace iflame::ops::cuda {

namespace {

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

}  // namespace iflame::ops::cuda
