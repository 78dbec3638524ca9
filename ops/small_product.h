// small_product.h: the matrix products of a decoding step, where x has a few
// rows (one per sequence) and the product is a read of the weights. These are
// linear_forward (ops/linear.h) and, for the feed-forward input, linear_forward
// followed by swiglu_packed_forward (ops/swiglu.h), with one kernel each on the
// GPU for small batches; the CPU (and every case the kernels do not take) runs
// exactly those ops, so their references (ops/cpu/linear.cpp, ops/cpu/swiglu.cpp)
// are the references here too.
//
// y = x W^T + bias (x [B, K] or [B, 1, K], W [N, K]), as linear_forward computes
// it with `compute` products; and the fused feed-forward input:
// swiglu(x W12^T + b12) for W12 = [proj1; proj2] padded to [2F, K]. On the GPU
// with bf16 W (converted once, infer/decode.h), x rounded to bf16 as cuBLAS's
// bf16 products round it, f32 sums, the bias (and the gate) in the same pass,
// one launch instead of cuBLAS's plus x's conversion, the bias fill (and the
// gate):
//  - at most kSmallBatch rows: a warp per output row (per pair of rows for the
//    gate) reading W once: at batch 1 a product is a read of its weights
//    (ops/cuda/small_product.cu);
//  - kSmallBatch + 1 .. kSmallBatchMma rows: the tensor cores (mma.sync), K split
//    over a thread-block cluster whose blocks sum their partial products through
//    distributed shared memory (ops/cuda/small_product_mma.cu), while its shared
//    memory stays within kSmallBatchMmaShared.
// Otherwise (more rows, x too wide, W or x not 16-byte aligned, K % 8 != 0)
// linear_forward (and swiglu_packed_forward).
#pragma once
#include "core/tensor.h"

namespace iflame::ops {

constexpr int kSmallBatch = 8;
constexpr int64_t kSmallBatchShared = 48 * 1024;  // bytes of x the GEMV stages
constexpr int kSmallBatchMma = 64;
constexpr int64_t kSmallBatchMmaShared = 200 * 1024;  // bytes of shared memory per block

Tensor decode_product(const Tensor& x, const Tensor& w, const Tensor& bias, DType compute);
Tensor decode_product_swiglu(const Tensor& x, const Tensor& w12, const Tensor& b12, DType compute);

namespace cuda {
// The small-batch bf16 kernels (rows <= kSmallBatch, K % 8 == 0, W bf16).
Tensor small_batch_product(const Tensor& x, const Tensor& w, const Tensor& bias, bool swiglu);
// The tensor-core kernel (rows <= kSmallBatchMma, K % 8 == 0, W bf16 and x f32,
// both contiguous and 16-byte aligned); y f32 [rows, N] ([rows, N / 2] with swiglu).
Tensor small_batch_product_mma(const Tensor& x, const Tensor& w, const Tensor& bias, bool swiglu);
// Bytes of shared memory a block of it needs for rows x K, or -1 where it cannot
// run (this build's kernels are for an architecture before sm_90: no clusters).
int64_t small_batch_mma_shared(int64_t rows, int64_t K, bool swiglu);
}  // namespace cuda

}  // namespace iflame::ops
