// linear_attention_bf16.h: the tensor-core decayed linear attention for bf16
// q/k/v with head dim 32 (ops/cuda/linear_attention_bf16.cu), internal to
// ops/cuda/: the entry points ops::cuda::linear_attention_forward/backward call
// when linear_bf16::usable(...) says so, and the kernel's layout of the work
// (chunks, which warp owns what, which decay weighs which product, the passes of
// the backward) as plain functions the CPU tests use to emulate the kernel.
// Host and device; builds without nvcc.
#pragma once
#include <initializer_list>
#include <vector>

#include "core/bf16.h"  // IFLAME_HD

namespace iflame {
class Tensor;
}

namespace iflame::ops::cuda::linear_bf16 {

constexpr int kHeadDim = 32;
constexpr int kChunk = 64;                   // positions per chunk
constexpr int kWarps = 4;                    // per block
constexpr int kThreads = 32 * kWarps;
constexpr int kWarpRows = 16;                // chunk rows of one warp (mma m16)
static_assert(kWarps * kWarpRows == kChunk, "the warps' rows tile the chunk");
// bf16 elements between consecutive rows of a shared tile: 32 + 8 of padding (80
// bytes), so the 8 rows of each ldmatrix phase fall in distinct banks (as in
// flash_attention_bf16.h).
constexpr int kSharedPitch = kHeadDim + 8;
constexpr int kMaxHeads = 256;               // slopes travel as a kernel argument

// Slopes travel as a kernel argument: no copy, no synchronisation.
struct Slopes {
  float s[kMaxHeads];
};
// The operands of one decayed causal product (below), and up to three of them
// run by one launch (the backward's passes); the f32 kernels of
// linear_attention.cu take the same with T = float.
// The slopes of `op`'s heads as a kernel argument (at most kMaxHeads, checked).
Slopes pack_slopes(const char* op, const std::vector<float>& slopes);
template <typename T>
struct ProductPass {
  const T* a;
  const T* b;
  const T* c;
  T* out;
  int reverse;  // 1: position p is time T-1-p
};
template <typename T>
struct ProductPasses {
  ProductPass<T> pass[3];
  int count;
};

// Every pass is one "decayed causal product" over positions p (p = t, or
// p = T - 1 - t for the reversed passes):
//   out_p = sum_{p' <= p} exp(-s (p - p')) (a_p . b_p') c_p'
// computed chunk by chunk (ops/cpu/linear_attention.cpp's chunked function):
//   out_{c0+r} = sum_{j <= r} decay[r - j] (a_r . b_j) c_j        (inside the chunk)
//              + decay[r + 1] a_r S                               (everything before it)
//   S <- decay[kChunk] S + sum_j decay[kChunk - 1 - j] b_j^T c_j  (after a full chunk)
// with decay[n] = exp(-s n) and r, j rows of the chunk.

IFLAME_HD int chunk_count(int T) { return (T + kChunk - 1) / kChunk; }
// Time of position p.
IFLAME_HD int time_of(int p, int T, bool reverse) { return reverse ? T - 1 - p : p; }

// Inside a chunk, row r sees row j iff j <= r, with weight decay[r - j].
IFLAME_HD bool chunk_sees(int r, int j) { return j <= r; }
IFLAME_HD int inter_decay_index(int r) { return r + 1; }             // the state's weight on row r
IFLAME_HD int state_decay_index(int j) { return kChunk - 1 - j; }    // row j's weight in the update

// Warp w owns chunk rows [16 w, 16 w + 16). Its rows see keys 0 .. 16 w + 15 of the
// chunk only: score_blocks(w) 8-key accumulators of a b^T, of which the last two
// cross the diagonal (element mask), and value_steps(w) 16-key steps of P c.
IFLAME_HD int warp_first_row(int warp) { return kWarpRows * warp; }
IFLAME_HD int score_blocks(int warp) { return 2 * warp + 2; }
IFLAME_HD bool score_block_needs_mask(int warp, int nb) { return nb >= 2 * warp; }
IFLAME_HD int value_steps(int warp) { return warp + 1; }

// The 32 x 32 state S[e][d] (e indexes b's dims, d c's) is kept in f32 as the
// accumulators of the update products, warp w owning the 16 x 16 block at rows
// state_block_row(w), columns state_block_col(w) (two m16n8 accumulators).
IFLAME_HD int state_block_row(int warp) { return 16 * (warp >> 1); }
IFLAME_HD int state_block_col(int warp) { return 16 * (warp & 1); }

// Which tensor plays a, b and c in each pass, and its direction.
enum class Operand { GradO, Q, K, V };
struct PassSpec {
  Operand a, b, c;
  bool reverse;
};
// The forward: o = product(q, k, v).
inline constexpr PassSpec kForwardPass = {Operand::Q, Operand::K, Operand::V, false};
// The backward, one launch of three passes (outputs grad_q, grad_k, grad_v):
//   dq_t = sum_{j <= t} w (do_t . v_j) k_j   = product(do, v, k)
//   dk_j = sum_{t >= j} w (v_j . do_t) q_t   = reversed product(v, do, q)
//   dv_j = sum_{t >= j} w (k_j . q_t) do_t   = reversed product(k, q, do)
inline constexpr PassSpec kBackwardPasses[3] = {{Operand::GradO, Operand::V, Operand::K, false},
                                                {Operand::V, Operand::GradO, Operand::Q, true},
                                                {Operand::K, Operand::Q, Operand::GradO, true}};
// Block x of a launch of `passes` passes: the passes of one (b, h) are neighbours,
// so the two reversed passes of the backward, which both read q and grad_o in the
// same order, run together and share those reads in L2.
IFLAME_HD int pass_of_block(int block, int passes) { return block % passes; }
IFLAME_HD int head_of_block(int block, int passes) { return block / passes; }

// Whether the tensor-core kernels take these tensors: bf16, head dim 32, and data
// 16-byte aligned (rows are copied in 16-byte pieces). The kernel choice
// linear_attention_mma (ops/kernel_choices.h) turns them off (the f32-arithmetic kernels run instead).
bool usable(std::initializer_list<const Tensor*> tensors);

// As ops::cuda::linear_attention_forward/backward (ops/linear_attention.h), for
// tensors usable() accepts; outputs bf16.
Tensor forward(const Tensor& q, const Tensor& k, const Tensor& v, const std::vector<float>& slopes);
void backward(const Tensor& grad_o, const Tensor& q, const Tensor& k, const Tensor& v,
              const std::vector<float>& slopes, Tensor& grad_q, Tensor& grad_k, Tensor& grad_v);

}  // namespace iflame::ops::cuda::linear_bf16
