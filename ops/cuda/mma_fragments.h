// mma_fragments.h: which matrix elements each lane of a warp holds for
// mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32, and which row each lane
// hands to ldmatrix.x4, as small functions the kernels use for every index and
// the CPU tests use to emulate a warp (tests/test_attention.cpp). Internal to
// ops/cuda/; plain C++ (host and device), so it builds without nvcc.
//
// From the PTX ISA, "Matrix Fragments for mma.m16n8k16 with floating point type"
// (group = lane / 4, thread_in_group = lane % 4):
//   A 16x16 (row major), four .b32 registers of two bf16 each (low half first):
//     register r holds A[a_row][a_col], A[a_row][a_col + 1] with
//     a_row = group + 8 (r & 1), a_col = 2 thread_in_group + 8 (r >> 1).
//   B 16x8 (k x n), two registers: register r holds B[b_k][b_n], B[b_k + 1][b_n]
//     with b_k = 2 thread_in_group + 8 r, b_n = group.
//   C/D 16x8 f32, four registers: element i at row group + 8 (i >> 1),
//     column 2 thread_in_group + (i & 1).
// ldmatrix.sync.aligned.m8n8.x4.b16: lanes 8m .. 8m+7 give the addresses of rows
// 0..7 of matrix m (8 consecutive b16 each); register m of lane l receives
// row l / 4, columns 2 (l % 4) and 2 (l % 4) + 1 of matrix m; with .trans it
// receives column l / 4, rows 2 (l % 4) and 2 (l % 4) + 1 instead.
#pragma once
#include <cstdint>

#include "core/bf16.h"  // IFLAME_HD, float_to_bf16

namespace iflame::ops::cuda::mma {

IFLAME_HD int group_of(int lane) { return lane >> 2; }
IFLAME_HD int thread_in_group(int lane) { return lane & 3; }

// A fragment, register r in 0..3: element (a_row, a_col) low, (a_row, a_col + 1) high.
IFLAME_HD int a_row(int lane, int r) { return group_of(lane) + 8 * (r & 1); }
IFLAME_HD int a_col(int lane, int r) { return 2 * thread_in_group(lane) + 8 * (r >> 1); }

// B fragment, register r in 0..1: element (b_k, b_n) low, (b_k + 1, b_n) high.
IFLAME_HD int b_k(int lane, int r) { return 2 * thread_in_group(lane) + 8 * r; }
IFLAME_HD int b_n(int lane) { return group_of(lane); }

// C/D fragment, element i in 0..3.
IFLAME_HD int c_row(int lane, int i) { return group_of(lane) + 8 * (i >> 1); }
IFLAME_HD int c_col(int lane, int i) { return 2 * thread_in_group(lane) + (i & 1); }

// ldmatrix.x4 over a 16x16 block of a row-major matrix, block-relative row and
// column of the 8-element row this lane points at. Matrices: 0 = rows 0-7 x
// columns 0-7, 1 = rows 8-15 x 0-7, 2 = rows 0-7 x 8-15, 3 = rows 8-15 x 8-15.
//  - no .trans, the block an A operand (rows m, columns k): registers 0..3 are
//    exactly the A fragment's registers 0..3;
//  - .trans, the block B stored k-major (rows k, columns n, e.g. V [key][dim] in
//    P V): registers {0, 1} are the B fragment of columns n 0..7, {2, 3} of n 8..15.
IFLAME_HD int ldsm_block_row(int lane) { return (lane & 7) + 8 * ((lane >> 3) & 1); }
IFLAME_HD int ldsm_block_col(int lane) { return 8 * (lane >> 4); }

// ldmatrix.x4 without .trans over an 8x32 block of a matrix stored n-major (rows
// n, columns k, e.g. K [key][dim] in Q K^T, where B[k][n] = K[n][k]): matrix m is
// columns 8m .. 8m+7; registers {0, 1} are the B fragment of k 0..15, {2, 3} of
// k 16..31, all for the block's 8 columns n.
IFLAME_HD int ldsm_nmajor_row(int lane) { return lane & 7; }
IFLAME_HD int ldsm_nmajor_col(int lane) { return 8 * (lane >> 3); }

// ldmatrix.x4 with .trans over a 16x16 block of a matrix stored k-major (rows k,
// columns m, e.g. K [position][dim] for the A operand of K^T V, where A[m][k] =
// K[k][m]): matrix m is block rows (k) 8 (m >> 1) .. + 7 and columns 8 (m & 1) ..
// + 7, so registers 0..3 are exactly the A fragment's registers 0..3 of A = the
// block's transpose.
IFLAME_HD int ldsm_kmajor_a_row(int lane) { return (lane & 7) + 8 * (lane >> 4); }
IFLAME_HD int ldsm_kmajor_a_col(int lane) { return 8 * ((lane >> 3) & 1); }

// Two floats as a bf16 pair in one register (lo in the low half), rounding to
// nearest even as cvt.rn.bf16x2.f32 does.
IFLAME_HD uint32_t pack_bf16x2(float lo, float hi) {
#if defined(__CUDA_ARCH__)
  uint32_t r;
  asm("cvt.rn.bf16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
  return r;
#else
  return static_cast<uint32_t>(float_to_bf16(lo).bits) |
         (static_cast<uint32_t>(float_to_bf16(hi).bits) << 16);
#endif
}

// The two bf16 of a pair as floats (exact).
IFLAME_HD float bf16x2_lo(uint32_t pair) { return bf16_to_float(bf16{static_cast<uint16_t>(pair & 0xffffu)}); }
IFLAME_HD float bf16x2_hi(uint32_t pair) { return bf16_to_float(bf16{static_cast<uint16_t>(pair >> 16)}); }

// Two accumulators of one 16x16 product (c0: columns 0..7, c1: columns 8..15) as
// the A operand (rows 16, k 16) of the next product, rounded to bf16: the
// accumulator's (row, column) pairs are exactly the A fragment's, so no lane
// exchanges data (FlashAttention-2's P V).
IFLAME_HD void c_pair_to_a(const float (&c0)[4], const float (&c1)[4], uint32_t (&a)[4]) {
  a[0] = pack_bf16x2(c0[0], c0[1]);  // row group,     k 2t, 2t+1
  a[1] = pack_bf16x2(c0[2], c0[3]);  // row group + 8, k 2t, 2t+1
  a[2] = pack_bf16x2(c1[0], c1[1]);  // row group,     k 2t+8, 2t+9
  a[3] = pack_bf16x2(c1[2], c1[3]);  // row group + 8, k 2t+8, 2t+9
}

}  // namespace iflame::ops::cuda::mma
