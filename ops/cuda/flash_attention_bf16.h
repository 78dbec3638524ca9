// flash_attention_bf16.h: the tensor-core causal attention for bf16 q/k/v with
// head dim 32 (ops/cuda/flash_attention_bf16.cu), internal to ops/cuda/:
// the entry points ops::cuda::causal_attention_forward/backward call when
// flash::usable(...) says so, and the tile schedule (which tiles a block visits,
// which need the element mask) as plain functions the CPU tests check against
// brute force. Host and device; builds without nvcc.
#pragma once
#include <initializer_list>

#include "core/bf16.h"  // IFLAME_HD

namespace iflame {
class Tensor;
}

namespace iflame::ops::cuda::flash {

constexpr int kHeadDim = 32;
constexpr int kWarps = 4;                      // per block
constexpr int kThreads = 32 * kWarps;
constexpr int kWarpRows = 16;                  // rows of one warp's mma (m16)
constexpr int kBlockRows = kWarps * kWarpRows;  // queries (forward, dQ) or keys (dK/dV) per block
constexpr int kTile = 64;                      // keys (forward, dQ) or queries (dK/dV) per tile
static_assert(kTile == kBlockRows, "the backward stages 64-row tiles of both kinds");
// bf16 elements between consecutive rows of a shared tile: 32 + 8 of padding (80
// bytes), so the 8 rows of each ldmatrix phase fall in distinct banks.
constexpr int kSharedPitch = kHeadDim + 8;

// Query i (0-based among Tq) sees key j iff j <= i + offset, offset = Tk - Tq.

// Forward and dQ: the block of queries [q0, q0 + kBlockRows) visits key tiles
// [0, key_tiles): the last one holds the last key its last valid query sees.
IFLAME_HD int key_tiles_for_queries(int q0, int Tq, int Tk) {
  const int q_end = q0 + kBlockRows < Tq ? q0 + kBlockRows : Tq;
  return (q_end + (Tk - Tq) + kTile - 1) / kTile;
}
// Whether the warp rows [r0, r0 + 16) see any key of the tile [k0, k0 + kTile);
// a warp that does not skips the tile (its state would not change).
IFLAME_HD bool warp_rows_see_tile(int r0, int k0, int offset) {
  return k0 <= r0 + kWarpRows - 1 + offset;
}
// Whether some key of the tile is hidden from some warp row (j > i + offset) or
// lies past the end (j >= Tk): then scores go through the element mask
// (masked_query_key); otherwise every (row, key) pair is visible and in range.
IFLAME_HD bool warp_rows_need_mask(int r0, int k0, int offset, int Tk) {
  return k0 + kTile - 1 > r0 + offset || k0 + kTile > Tk;
}
// Element mask of the forward and dQ (rows past Tq are computed, never stored).
IFLAME_HD bool masked_query_key(int i, int j, int offset, int Tk) { return j > i + offset || j >= Tk; }

// dK/dV: the block of keys [k0, k0 + kBlockRows) visits query tiles
// [first_query_tile, ceil(Tq / kTile)): the first holds the first query that
// sees key k0.
IFLAME_HD int first_query_tile(int k0, int offset) {
  return (k0 - offset > 0 ? k0 - offset : 0) / kTile;
}
IFLAME_HD int query_tiles(int Tq) { return (Tq + kTile - 1) / kTile; }
// Whether some query of the tile [q0, q0 + kTile) (those < Tq) sees some key of
// the warp's keys [kw0, kw0 + 16).
IFLAME_HD bool warp_keys_see_tile(int kw0, int q0, int Tq, int offset) {
  const int q_last = (q0 + kTile < Tq ? q0 + kTile : Tq) - 1;
  return kw0 <= q_last + offset;
}
// Whether some (key, query) pair of the warp's keys and the tile is hidden or
// has its query past the end.
IFLAME_HD bool warp_keys_need_mask(int kw0, int q0, int Tq, int offset) {
  return kw0 + kWarpRows - 1 > q0 + offset || q0 + kTile > Tq;
}
// Element mask of dK/dV (keys past Tk are computed, never stored).
IFLAME_HD bool masked_key_query(int j, int i, int offset, int Tq) { return j > i + offset || i >= Tq; }

// Whether the tensor-core kernels take these tensors: bf16, head dim 32, and
// data 16-byte aligned (they copy rows in 16-byte pieces). The kernel choice
// flash_attention (ops/kernel_choices.h) turns them off (the f32-arithmetic kernels run instead).
bool usable(std::initializer_list<const Tensor*> tensors);

// As ops::cuda::causal_attention_forward/backward (ops/causal_attention.h), for
// tensors usable() accepts; outputs bf16 (lse f32).
Tensor forward(const Tensor& q, const Tensor& k, const Tensor& v, float scale, Tensor* lse);
void backward(const Tensor& grad_o, const Tensor& q, const Tensor& k, const Tensor& v,
              const Tensor& o, const Tensor& lse, float scale, Tensor& grad_q, Tensor& grad_k,
              Tensor& grad_v);

}  // namespace iflame::ops::cuda::flash
