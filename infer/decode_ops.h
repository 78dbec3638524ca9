// decode_ops.h: the kernels cached decoding needs beyond the training ops,
// written so that no kernel argument of a decoding step depends on the
// position: positions are read from a counter in device memory. A step's work
// is then the same at every position of the same phase (p mod 9), so each
// phase can be captured once as a CUDA graph and replayed (infer/decode.h).
//
// `position` is an i32 tensor on the other tensors' device holding the level-0
// position p of the step: [1], one position for every row, or [B], one per row
// (continuous batching: a row that starts a new sample starts over at 0 while
// the others go on); a block at level L works at position p / div with div =
// 3^L (1, 3 or 9).
//
// The CPU versions are the training ops' CPU references composed (so their
// numbers are the training path's); the CUDA versions fuse what the step would
// otherwise launch separately, with the same f32 arithmetic.
#pragma once
#include <vector>

#include "core/tensor.h"

namespace iflame::infer {

// qkv [B, 3*H*D] (f32): q, k and v side by side, as the fused projection writes
// them. Returns q [B, H, D] after RoPE at position p / div, in k_dst's dtype.
// k (after RoPE) and v are written to k_dst and v_dst: either [B, H, D]
// tensors, or [B, capacity, H, D] caches whose row p / div is written; f32, or
// on the GPU also bf16 (rounded once from the f32 results).
Tensor qkv_rope_step(const Tensor& qkv, int64_t heads, const Tensor& position, int64_t div, Tensor& k_dst,
                     Tensor& v_dst);

// Attention of q [B, H, D] over cache rows 0 .. p / div (infer/cached_attention.h).
// host_length: the caller's host copy of p / div + 1, used only to count the
// step's FLOPs and bytes for the profiler (the kernel reads the device counter);
// -1 when unknown, which counts them as 0.
Tensor cached_attention_at(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                           const Tensor& position, int64_t div, float scale, int64_t host_length = -1);

// ab [..., 2F] -> silu(a) * b, [..., F], with a = ab[..., :F] and b = ab[..., F:]
// (the fused proj1/proj2 product; ops/swiglu.h's gate).
Tensor swiglu_pair(const Tensor& ab);

// h = x + y and n = rms_norm(h) * weight, both written (shaped like x).
void add_rms_norm(const Tensor& x, const Tensor& y, const Tensor& weight, float eps, Tensor& h, Tensor& n);

// group [B, 3, d]: its row (p / div) % 3 becomes x ([B, 1, d]).
void write_group_slot(Tensor& group, const Tensor& x, const Tensor& position, int64_t div);

// position += 1 for every entry (on the device, queued).
void advance_position(Tensor& position);

// For every row b with flags[b] != 0, row b of each tensor (contiguous, [B, ...],
// 4-byte elements: f32 or i32) becomes 0; the others are left alone. One launch
// on the GPU whatever the number of tensors (at most kMaxZeroedTensors), with no
// host read of the flags, so a CUDA graph can replay it.
constexpr int kMaxZeroedTensors = 64;
void zero_flagged_rows(const std::vector<Tensor>& tensors, const Tensor& flags);

// The step's products: y = x W^T + bias (x [B, K] or [B, 1, K], W [N, K]), as
// ops::linear_forward computes them with `compute` products; and the fused
// feed-forward input: swiglu_pair(x W12^T + b12) for W12 = [proj1; proj2]
// padded to [2F, K]. On the GPU with bf16 W (converted once, infer/decode.h),
// x rounded to bf16 as cuBLAS's bf16 products round it, f32 sums, the bias (and
// the gate) in the same pass, one launch instead of cuBLAS's plus x's
// conversion, the bias fill (and swiglu_pair):
//  - at most kSmallBatch rows: a warp per output row (per pair of rows for the
//    gate) reading W once: at batch 1 a product is a read of its weights;
//  - kSmallBatch + 1 .. kSmallBatchMma rows: the tensor cores (mma.sync), K split
//    over a thread-block cluster whose blocks sum their partial products through
//    distributed shared memory (infer/small_product_mma.cu), while its shared
//    memory stays within kSmallBatchMmaShared.
// Otherwise (more rows, x too wide, W or x not 16-byte aligned, K % 8 != 0)
// ops::linear_forward (and swiglu_pair).
constexpr int kSmallBatch = 8;
constexpr int64_t kSmallBatchShared = 48 * 1024;  // bytes of x the GEMV stages
constexpr int kSmallBatchMma = 64;
constexpr int64_t kSmallBatchMmaShared = 200 * 1024;  // bytes of shared memory per block
Tensor decode_product(const Tensor& x, const Tensor& w, const Tensor& bias, DType compute);
Tensor decode_product_swiglu(const Tensor& x, const Tensor& w12, const Tensor& b12, DType compute);

namespace cuda {
Tensor qkv_rope_step(const Tensor& qkv, int64_t heads, const Tensor& position, int64_t div, Tensor& k_dst,
                     Tensor& v_dst);
Tensor cached_attention_at(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                           const Tensor& position, int64_t div, float scale);
Tensor swiglu_pair(const Tensor& ab);
void add_rms_norm(const Tensor& x, const Tensor& y, const Tensor& weight, float eps, Tensor& h, Tensor& n);
void write_group_slot(Tensor& group, const Tensor& x, const Tensor& position, int64_t div);
void advance_position(Tensor& position);
void zero_flagged_rows(const std::vector<Tensor>& tensors, const Tensor& flags);
// The small-batch bf16 kernels (rows <= kSmallBatch, K % 8 == 0, W bf16).
Tensor small_batch_product(const Tensor& x, const Tensor& w, const Tensor& bias, bool swiglu);
// The tensor-core kernel (rows <= kSmallBatchMma, K % 8 == 0, W bf16 and x f32,
// both contiguous and 16-byte aligned); y f32 [rows, N] ([rows, N / 2] with swiglu).
Tensor small_batch_product_mma(const Tensor& x, const Tensor& w, const Tensor& bias, bool swiglu);
// Bytes of shared memory a block of it needs for rows x K, or -1 where it cannot
// run (this build's kernels are for an architecture before sm_90: no clusters).
int64_t small_batch_mma_shared(int64_t rows, int64_t K, bool swiglu);
}  // namespace cuda

}  // namespace iflame::infer
