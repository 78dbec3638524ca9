// mma_tiles.cuh: the shared-memory tile loops of the bf16 tensor-core attention
// kernels (internal to ops/cuda/: flash_attention_bf16.cu, linear_attention_bf16.cu).
// A tile is kRows rows of one head (kHeadDim = 32 bf16 each) in shared memory,
// kPitch bf16 apart; a warp works on 16 of its rows at a time with
// mma.sync.m16n8k16 (mma_ptx.cuh; fragment layouts in mma_fragments.h).
// Written once here so that both kernels run the same loops.
#pragma once
#include <cstdint>

#include "core/bf16.h"
#include "ops/cuda/attention_util.cuh"
#include "ops/cuda/mma_fragments.h"
#include "ops/cuda/mma_ptx.cuh"

namespace iflame::ops::cuda::mma {

template <int kPitch, int kRows, int kThreads>
struct SharedTiles {
  static constexpr int kHeadDim = attention::kHeadDim;
  static constexpr int kPieces = kHeadDim / 8;   // 16-byte pieces per row
  static constexpr int kNBlocks = kRows / 8;     // 8-row accumulators across a tile
  static constexpr int kDBlocks = kHeadDim / 8;  // 8-column accumulators across the head dim
  static_assert(kHeadDim == 32, "the fragment loops are written for two k-steps of 16");
  static_assert((kRows * kPieces) % kThreads == 0, "tile copies split evenly over the threads");

  // Queues the copy of rows [first, first + kRows) into the tile: row p from
  // source row row_of(p) of the head (`stride` elements apart), zeros for
  // p >= end. Consecutive threads take consecutive 16-byte pieces.
  template <typename RowOf>
  static __device__ __forceinline__ void load_rows_async(uint16_t* tile, const bf16* head, int first, int end,
                                                         long long stride, RowOf row_of) {
#pragma unroll
    for (int it = 0; it < kRows * kPieces / kThreads; it++) {
      const int piece = threadIdx.x + it * kThreads;
      const int r = piece / kPieces, part = piece % kPieces;
      const int p = first + r;
      const bool valid = p < end;
      const bf16* src = head + (long long)(valid ? row_of(p) : 0) * stride + part * 8;
      cp_async_16(smem_addr(tile + r * kPitch + part * 8), src, valid);
    }
  }

  // A fragments (16 rows x 32 dims: k-steps 0..15 and 16..31) of 16 shared rows.
  static __device__ __forceinline__ void load_a_frags(uint32_t (&a)[2][4], const uint16_t* rows, int lane) {
    const uint32_t base = smem_addr(rows + ldsm_block_row(lane) * kPitch + ldsm_block_col(lane));
    ldsm_x4(a[0], base);
    ldsm_x4(a[1], base + 16 * 2);
  }

  // acc[nb] = A (16 x 32, fragments) times the transpose of tile rows 8 nb .. 8 nb + 7,
  // for nb < blocks (the others are left at 0). (Flash: S = Q K^T, dP = dO V^T and
  // their transposes; linear: the chunk's scores.)
  static __device__ __forceinline__ void mma_rows_by_tile_t(float (&acc)[kNBlocks][4], const uint32_t (&a)[2][4],
                                                            const uint16_t* tile, int lane, int blocks = kNBlocks) {
    const uint32_t base = smem_addr(tile + ldsm_nmajor_row(lane) * kPitch + ldsm_nmajor_col(lane));
#pragma unroll
    for (int nb = 0; nb < kNBlocks; nb++) {
      acc[nb][0] = acc[nb][1] = acc[nb][2] = acc[nb][3] = 0.0f;
      if (nb < blocks) {
        uint32_t b[4];
        ldsm_x4(b, base + nb * 8 * kPitch * 2);
        mma_bf16(acc[nb], a[0], b[0], b[1]);
        mma_bf16(acc[nb], a[1], b[2], b[3]);
      }
    }
  }

  // acc (16 x 32) += p (16 x kRows accumulators, rounded to bf16) times the tile
  // (kRows x 32), over the 16-row steps kk < steps. (O += P V, dQ += dS K,
  // dV += P^T dO, dK += dS^T Q; linear attention's P c.)
  static __device__ __forceinline__ void mma_acc_by_tile(float (&acc)[kDBlocks][4], const float (&p)[kNBlocks][4],
                                                         const uint16_t* tile, int lane, int steps = kRows / 16) {
    const uint32_t base = smem_addr(tile + ldsm_block_row(lane) * kPitch + ldsm_block_col(lane));
#pragma unroll
    for (int kk = 0; kk < kRows / 16; kk++) {
      if (kk < steps) {
        uint32_t a[4];
        c_pair_to_a(p[2 * kk], p[2 * kk + 1], a);
#pragma unroll
        for (int dn = 0; dn < kHeadDim / 16; dn++) {
          uint32_t b[4];
          ldsm_x4_trans(b, base + (kk * 16 * kPitch + dn * 16) * 2);
          mma_bf16(acc[2 * dn], a, b[0], b[1]);
          mma_bf16(acc[2 * dn + 1], a, b[2], b[3]);
        }
      }
    }
  }
};

}  // namespace iflame::ops::cuda::mma
