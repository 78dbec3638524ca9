// cuda/flash_attention_bf16.cu: causal softmax attention on the tensor cores, for
// bf16 q/k/v with head dim 32 (FlashAttention-2's algorithm, written with
// mma.sync.m16n8k16 bf16 x bf16 -> f32 and ldmatrix through inline PTX).
//
// Layout of the work: a block is 4 warps; each warp owns 16 rows (queries in the
// forward and dQ kernels, keys in the dK/dV kernel), so a block owns 64 rows, and
// it streams 64-row tiles of the other side through shared memory, two stages
// deep (cp.async: the next tile is copied while the current one is computed).
// Shared rows are 40 bf16 apart (32 + 8 of padding, 80 bytes), which makes every
// ldmatrix (8 rows of 16 bytes per phase) and every staged 4-byte store free of
// bank conflicts. Which lane holds which element: ops/cuda/mma_fragments.h, whose
// index functions the CPU tests use to emulate the warp's products.
//
// Forward (grid: query tiles x B*H, the last query tile first since it sees the
// most keys): per key tile a warp computes S = Q K^T (16 x 64, f32 accumulators:
// Q's fragments stay in registers, K's come by ldmatrix), scales S by
// scale * log2(e) in f32 (q is not pre-scaled in bf16, so S stays as exact as
// the f32 accumulation), masks only where the tile crosses the diagonal or the
// end of the keys, and updates the online softmax (running row max, rescale of
// the output accumulators, per-lane partial row sums of the f32 probabilities,
// exp2 throughout). P, rounded to bf16, is reused in registers as the A operand
// of O += P V (the accumulator layout equals the A layout; V comes by
// ldmatrix.trans). Tiles wholly above the diagonal are never visited; a warp
// whose 16 rows see none of a tile's keys skips it. The end: O / rowsum as bf16
// through shared memory (16-byte stores), lse = (max + log2 sum) * ln 2.
//
// Backward (deterministic, no atomics), three kernels:
//   1. Dvec_i = dO_i . O_i in f32, one thread per row;
//   2. dQ (grid as the forward): per key tile, S = Q K^T, P = exp2(S scale log2e
//      - lse_i log2e) from the forward's lse, dP = dO V^T, dS = P (dP - Dvec_i),
//      dQ += dS K (dS rounded to bf16); dQ scaled by `scale` at the end;
//   3. dK, dV (grid: key tiles x B*H, key tile 0 first): per query tile that
//      sees the block's keys, the transposed products S^T = K Q^T, P^T from lse
//      (per column, staged in shared memory with Dvec), dV += P^T dO,
//      dP^T = V dO^T, dS^T = P^T (dP^T - Dvec), dK += dS^T Q.
// P is rebuilt in both 2 and 3 (the price of no atomics). Every product
// accumulates in f32; the operands rounded to bf16 are P and dS (as in
// FlashAttention-2), besides the bf16 inputs. Outputs bf16.
//
// Rows past Tq (queries) or Tk (keys) of a partial tile are zero-filled on load,
// computed like the others (finite: every row sees key 0) and never stored.
#include "ops/cuda/flash_attention_bf16.h"

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "core/cuda_check.h"
#include "core/tensor.h"
#include "ops/cuda/attention_util.cuh"
#include "ops/cuda/mma_fragments.h"
#include "ops/cuda/mma_ptx.cuh"
#include "ops/cuda/mma_tiles.cuh"
#include "ops/kernel_choices.h"

namespace iflame::ops::cuda::flash {

namespace {

using namespace mma;  // the PTX wrappers and fragment layouts

constexpr int kPitch = kSharedPitch;       // bf16 per shared row (80 bytes)
constexpr int kTileElems = kTile * kPitch;  // one 64-row shared tile
constexpr int kChunks = kHeadDim / 8;      // 16-byte pieces per row
constexpr int kNBlocks = kTile / 8;        // 8-column accumulators across a tile
constexpr int kDBlocks = kHeadDim / 8;     // 8-column accumulators across the head dim
constexpr unsigned kFullMask = 0xffffffffu;
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;
static_assert(kHeadDim == 32, "the fragment loops are written for two k-steps of 16");
static_assert(kThreads == 2 * kTile, "the dK/dV kernel copies lse and Dvec with one thread each");
static_assert((kTile * kChunks) % kThreads == 0, "tile copies split evenly over the threads");

struct Dims {
  int B, H, Tq, Tk, offset;  // offset = Tk - Tq: query i sees keys j <= i + offset
  long long stride;          // elements between consecutive positions of one head: H * 32
};

// Element (b, 0, h, 0) of a [B, T, H, 32] tensor.
template <typename T>
__device__ __forceinline__ T* head_ptr(T* p, int b, int h, int T_len, const Dims& s) {
  return p + (long long)b * T_len * s.stride + (long long)h * kHeadDim;
}

// ---------------------------------------------------------------------------------------
// Tiles: global <-> shared, shared -> fragments, and the two warp products
// ---------------------------------------------------------------------------------------

// The tile loops (mma_tiles.cuh) on this file's tiles: kTile rows, kPitch apart.
using Tiles = mma::SharedTiles<kPitch, kTile, kThreads>;

// Queues the copy of rows [first, first + kTile) of one head into a shared tile,
// zeros for rows >= end.
__device__ __forceinline__ void load_tile_async(uint16_t* tile, const bf16* head, int first,
                                                int end, long long stride) {
  Tiles::load_rows_async(tile, head, first, end, stride, [](int row) { return row; });
}

// Queues the copy of lse and Dvec of queries [q0, q0 + kTile) (zeros past Tq).
__device__ __forceinline__ void load_stats_async(float* s_lse, float* s_dvec, const float* lse_row,
                                                 const float* dvec_row, int q0, int Tq) {
  const int t = threadIdx.x, r = t % kTile;
  const bool valid = q0 + r < Tq;
  const float* src = (t < kTile ? lse_row : dvec_row) + (valid ? q0 + r : 0);
  cp_async_4(smem_addr((t < kTile ? s_lse : s_dvec) + r), src, valid);
}

// Sets to `value` the elements of a warp's 16 x kTile scores (rows row0 + 0..15,
// columns col0 + 0..kTile-1) for which masked(row, column) holds: the causal
// mask and the ends of the sequences, in the caller's words.
template <typename Masked>
__device__ __forceinline__ void set_masked(float (&sc)[kNBlocks][4], int lane, float value, int row0, int col0,
                                           Masked masked) {
#pragma unroll
  for (int nb = 0; nb < kNBlocks; nb++)
#pragma unroll
    for (int i = 0; i < 4; i++)
      if (masked(row0 + c_row(lane, i), col0 + nb * 8 + c_col(lane, i))) sc[nb][i] = value;
}

// A 16 x 32 accumulator, rows group scaled by f_lo and rows group + 8 by f_hi,
// as bf16 into 16 shared rows.
__device__ __forceinline__ void stage_acc(uint16_t* rows, const float (&acc)[kDBlocks][4],
                                          float f_lo, float f_hi, int lane) {
#pragma unroll
  for (int dn = 0; dn < kDBlocks; dn++) {
#pragma unroll
    for (int half = 0; half < 2; half++) {
      const int i = 2 * half;
      const float f = half ? f_hi : f_lo;
      uint16_t* at = rows + c_row(lane, i) * kPitch + dn * 8 + c_col(lane, i);
      *reinterpret_cast<uint32_t*>(at) = pack_bf16x2(acc[dn][i] * f, acc[dn][i + 1] * f);
    }
  }
}

// 16 staged shared rows -> global rows first .. first + 15 (those < end), 16 bytes a lane.
__device__ __forceinline__ void write_warp_rows(bf16* head, const uint16_t* rows, int first,
                                                int end, long long stride, int lane) {
#pragma unroll
  for (int it = 0; it < kWarpRows * kChunks / 32; it++) {
    const int c = lane + 32 * it;
    const int r = c / kChunks, part = c % kChunks;
    if (first + r < end) {
      *reinterpret_cast<uint4*>(head + (long long)(first + r) * stride + part * 8) =
          *reinterpret_cast<const uint4*>(rows + r * kPitch + part * 8);
    }
  }
}

// ---------------------------------------------------------------------------------------
// Kernels
// ---------------------------------------------------------------------------------------

// What a thread of the forward or dQ kernel works on: query tile blockIdx.x
// counted from the end (the tiles with the most keys start first) of head
// blockIdx.y, its warp's first query r0 and the key tiles the block's queries see.
struct QueryBlock {
  int warp, lane, b, h, q0, r0;
  bool warp_active;  // r0 < Tq
  int n_tiles;
  const bf16* k_head;
  const bf16* v_head;
};
__device__ __forceinline__ QueryBlock query_block(const bf16* k, const bf16* v, const Dims& s) {
  QueryBlock w;
  w.warp = threadIdx.x / 32;
  w.lane = threadIdx.x % 32;
  w.b = blockIdx.y / s.H;
  w.h = blockIdx.y % s.H;
  w.q0 = (gridDim.x - 1 - blockIdx.x) * kBlockRows;
  w.r0 = w.q0 + w.warp * kWarpRows;
  w.warp_active = w.r0 < s.Tq;
  w.n_tiles = key_tiles_for_queries(w.q0, s.Tq, s.Tk);
  w.k_head = head_ptr(k, w.b, w.h, s.Tk, s);
  w.v_head = head_ptr(v, w.b, w.h, s.Tk, s);
  return w;
}

// grid (query tiles, B*H), kThreads threads.
__global__ void __launch_bounds__(kThreads)
    flash_forward_kernel(const bf16* __restrict__ q, const bf16* __restrict__ k,
                         const bf16* __restrict__ v, bf16* __restrict__ o,
                         float* __restrict__ lse, Dims s, float scale_log2) {
  __shared__ __align__(128) uint16_t sQ[kTileElems];
  __shared__ __align__(128) uint16_t sK[2][kTileElems];
  __shared__ __align__(128) uint16_t sV[2][kTileElems];

  const auto [warp, lane, b, h, q0, r0, warp_active, n_tiles, k_head, v_head] = query_block(k, v, s);

  load_tile_async(sQ, head_ptr(q, b, h, s.Tq, s), q0, s.Tq, s.stride);
  load_tile_async(sK[0], k_head, 0, s.Tk, s.stride);
  load_tile_async(sV[0], v_head, 0, s.Tk, s.stride);
  cp_async_commit();

  uint32_t qa[2][4];
  float acc[kDBlocks][4];
#pragma unroll
  for (int dn = 0; dn < kDBlocks; dn++) acc[dn][0] = acc[dn][1] = acc[dn][2] = acc[dn][3] = 0.0f;
  // Rows group (r = 0) and group + 8 (r = 1) of the warp: running max (log2 units)
  // and this lane's partial sum over its columns.
  float row_max[2] = {-INFINITY, -INFINITY}, row_sum[2] = {0.0f, 0.0f};

  for (int t = 0; t < n_tiles; t++) {
    const int stage = t & 1, k0 = t * kTile;
    if (t + 1 < n_tiles) {  // the stage computed on in iteration t - 1, released by its barrier
      load_tile_async(sK[stage ^ 1], k_head, k0 + kTile, s.Tk, s.stride);
      load_tile_async(sV[stage ^ 1], v_head, k0 + kTile, s.Tk, s.stride);
    }
    cp_async_commit();  // possibly empty: keeps "all but the newest group" meaning tile t
    cp_async_wait<1>();
    __syncthreads();
    if (t == 0) Tiles::load_a_frags(qa, sQ + warp * kWarpRows * kPitch, lane);

    if (warp_active && warp_rows_see_tile(r0, k0, s.offset)) {
      float sc[kNBlocks][4];
      Tiles::mma_rows_by_tile_t(sc, qa, sK[stage], lane);
#pragma unroll
      for (int nb = 0; nb < kNBlocks; nb++)
#pragma unroll
        for (int i = 0; i < 4; i++) sc[nb][i] *= scale_log2;
      if (warp_rows_need_mask(r0, k0, s.offset, s.Tk)) {
        set_masked(sc, lane, -INFINITY, r0, k0, [&](int i, int j) { return masked_query_key(i, j, s.offset, s.Tk); });
      }
      // Online softmax; lanes 4g .. 4g+3 hold rows g and g + 8, 16 scores each.
#pragma unroll
      for (int r = 0; r < 2; r++) {
        float m = row_max[r];
#pragma unroll
        for (int nb = 0; nb < kNBlocks; nb++) m = fmaxf(m, fmaxf(sc[nb][2 * r], sc[nb][2 * r + 1]));
        m = fmaxf(m, __shfl_xor_sync(kFullMask, m, 1));
        m = fmaxf(m, __shfl_xor_sync(kFullMask, m, 2));
        // m stays -inf only while a row has seen no key (never after tile 0, whose key 0
        // every row sees); subtracting 0 then keeps every exp2 at 0 rather than NaN.
        const float m_use = m == -INFINITY ? 0.0f : m;
        const float correction = exp2f(row_max[r] - m_use);  // 0 on a row's first keys
        row_max[r] = m;
        row_sum[r] *= correction;
#pragma unroll
        for (int dn = 0; dn < kDBlocks; dn++) {
          acc[dn][2 * r] *= correction;
          acc[dn][2 * r + 1] *= correction;
        }
#pragma unroll
        for (int nb = 0; nb < kNBlocks; nb++)
#pragma unroll
          for (int j = 0; j < 2; j++) {
            const float p = exp2f(sc[nb][2 * r + j] - m_use);
            sc[nb][2 * r + j] = p;
            row_sum[r] += p;  // the f32 p: lse and the normalisation stay f32-exact
          }
      }
      Tiles::mma_acc_by_tile(acc, sc, sV[stage], lane);  // O += P V with P rounded to bf16
    }
    __syncthreads();  // everyone is done with this stage before it is refilled
  }
  cp_async_wait<0>();

#pragma unroll
  for (int r = 0; r < 2; r++) {
    row_sum[r] += __shfl_xor_sync(kFullMask, row_sum[r], 1);
    row_sum[r] += __shfl_xor_sync(kFullMask, row_sum[r], 2);
  }
  // The warp's own rows of sQ (only it read them, at t = 0) stage its output rows.
  uint16_t* o_rows = sQ + warp * kWarpRows * kPitch;
  stage_acc(o_rows, acc, row_sum[0] > 0.0f ? 1.0f / row_sum[0] : 0.0f,
            row_sum[1] > 0.0f ? 1.0f / row_sum[1] : 0.0f, lane);
  __syncwarp();
  write_warp_rows(head_ptr(o, b, h, s.Tq, s), o_rows, r0, s.Tq, s.stride, lane);
  if (thread_in_group(lane) == 0) {
#pragma unroll
    for (int r = 0; r < 2; r++) {
      const int row = r0 + group_of(lane) + 8 * r;
      if (row < s.Tq) lse[(long long)blockIdx.y * s.Tq + row] = (row_max[r] + log2f(row_sum[r])) * kLn2;
    }
  }
}

// dvec [B, H, Tq] = rowsum(dO * O) in f32; one thread per (b, t, h) row of 64 bytes.
__global__ void flash_dvec_kernel(const bf16* __restrict__ grad_o, const bf16* __restrict__ o,
                                  float* __restrict__ dvec, Dims s) {
  attention::attention_row_dots(s.B, s.Tq, s.H, dvec, [&](long long r) {
    const uint4* g = reinterpret_cast<const uint4*>(grad_o + r * kHeadDim);
    const uint4* x = reinterpret_cast<const uint4*>(o + r * kHeadDim);
    float sum = 0.0f;
#pragma unroll
    for (int c = 0; c < kChunks; c++) {
      const uint4 gv = g[c], xv = x[c];
      const uint32_t gw[4] = {gv.x, gv.y, gv.z, gv.w}, xw[4] = {xv.x, xv.y, xv.z, xv.w};
#pragma unroll
      for (int w = 0; w < 4; w++) {
        sum = fmaf(__uint_as_float(gw[w] << 16), __uint_as_float(xw[w] << 16), sum);
        sum = fmaf(__uint_as_float(gw[w] & 0xffff0000u), __uint_as_float(xw[w] & 0xffff0000u), sum);
      }
    }
    return sum;
  });
}

// dQ_i = scale sum_j dS_ij k_j. Grid as the forward.
__global__ void __launch_bounds__(kThreads)
    flash_backward_dq_kernel(const bf16* __restrict__ grad_o, const bf16* __restrict__ q,
                             const bf16* __restrict__ k, const bf16* __restrict__ v,
                             const float* __restrict__ lse, const float* __restrict__ dvec,
                             bf16* __restrict__ grad_q, Dims s, float scale, float scale_log2) {
  __shared__ __align__(128) uint16_t sQ[kTileElems];
  __shared__ __align__(128) uint16_t sdO[kTileElems];
  __shared__ __align__(128) uint16_t sK[2][kTileElems];
  __shared__ __align__(128) uint16_t sV[2][kTileElems];

  const auto [warp, lane, b, h, q0, r0, warp_active, n_tiles, k_head, v_head] = query_block(k, v, s);

  load_tile_async(sQ, head_ptr(q, b, h, s.Tq, s), q0, s.Tq, s.stride);
  load_tile_async(sdO, head_ptr(grad_o, b, h, s.Tq, s), q0, s.Tq, s.stride);
  load_tile_async(sK[0], k_head, 0, s.Tk, s.stride);
  load_tile_async(sV[0], v_head, 0, s.Tk, s.stride);
  cp_async_commit();

  // Rows group and group + 8: lse in log2 units and Dvec (zeros past Tq).
  float lse_log2[2], dvec_row[2];
#pragma unroll
  for (int r = 0; r < 2; r++) {
    const int row = r0 + group_of(lane) + 8 * r;
    const long long at = (long long)blockIdx.y * s.Tq + row;
    lse_log2[r] = row < s.Tq ? lse[at] * kLog2e : 0.0f;
    dvec_row[r] = row < s.Tq ? dvec[at] : 0.0f;
  }

  uint32_t qa[2][4], doa[2][4];
  float dq[kDBlocks][4];
#pragma unroll
  for (int dn = 0; dn < kDBlocks; dn++) dq[dn][0] = dq[dn][1] = dq[dn][2] = dq[dn][3] = 0.0f;

  for (int t = 0; t < n_tiles; t++) {
    const int stage = t & 1, k0 = t * kTile;
    if (t + 1 < n_tiles) {
      load_tile_async(sK[stage ^ 1], k_head, k0 + kTile, s.Tk, s.stride);
      load_tile_async(sV[stage ^ 1], v_head, k0 + kTile, s.Tk, s.stride);
    }
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();
    if (t == 0) {
      Tiles::load_a_frags(qa, sQ + warp * kWarpRows * kPitch, lane);
      Tiles::load_a_frags(doa, sdO + warp * kWarpRows * kPitch, lane);
    }

    if (warp_active && warp_rows_see_tile(r0, k0, s.offset)) {
      float p[kNBlocks][4];
      Tiles::mma_rows_by_tile_t(p, qa, sK[stage], lane);  // S
#pragma unroll
      for (int nb = 0; nb < kNBlocks; nb++)
#pragma unroll
        for (int i = 0; i < 4; i++) p[nb][i] = exp2f(fmaf(p[nb][i], scale_log2, -lse_log2[i >> 1]));
      if (warp_rows_need_mask(r0, k0, s.offset, s.Tk)) {
        set_masked(p, lane, 0.0f, r0, k0, [&](int i, int j) { return masked_query_key(i, j, s.offset, s.Tk); });
      }
      float ds[kNBlocks][4];
      Tiles::mma_rows_by_tile_t(ds, doa, sV[stage], lane);  // dP
#pragma unroll
      for (int nb = 0; nb < kNBlocks; nb++)
#pragma unroll
        for (int i = 0; i < 4; i++) ds[nb][i] = p[nb][i] * (ds[nb][i] - dvec_row[i >> 1]);
      Tiles::mma_acc_by_tile(dq, ds, sK[stage], lane);  // dQ += dS K
    }
    __syncthreads();
  }
  cp_async_wait<0>();

  uint16_t* out_rows = sQ + warp * kWarpRows * kPitch;  // the warp's own rows, read only at t = 0
  stage_acc(out_rows, dq, scale, scale, lane);
  __syncwarp();
  write_warp_rows(head_ptr(grad_q, b, h, s.Tq, s), out_rows, r0, s.Tq, s.stride, lane);
}

// dV_j = sum_i P_ij dO_i, dK_j = scale sum_i dS_ij q_i. grid (key tiles, B*H).
__global__ void __launch_bounds__(kThreads)
    flash_backward_dkdv_kernel(const bf16* __restrict__ grad_o, const bf16* __restrict__ q,
                               const bf16* __restrict__ k, const bf16* __restrict__ v,
                               const float* __restrict__ lse, const float* __restrict__ dvec,
                               bf16* __restrict__ grad_k, bf16* __restrict__ grad_v, Dims s,
                               float scale, float scale_log2) {
  __shared__ __align__(128) uint16_t sK[kTileElems];
  __shared__ __align__(128) uint16_t sV[kTileElems];
  __shared__ __align__(128) uint16_t sQ[2][kTileElems];
  __shared__ __align__(128) uint16_t sdO[2][kTileElems];
  __shared__ __align__(16) float sLse[2][kTile];
  __shared__ __align__(16) float sDvec[2][kTile];

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int b = blockIdx.y / s.H, h = blockIdx.y % s.H;
  const int k0 = blockIdx.x * kBlockRows;
  const int kw0 = k0 + warp * kWarpRows;  // this warp's first key
  const bool warp_active = kw0 < s.Tk;
  const int first = first_query_tile(k0, s.offset), last = query_tiles(s.Tq);
  const bf16* q_head = head_ptr(q, b, h, s.Tq, s);
  const bf16* do_head = head_ptr(grad_o, b, h, s.Tq, s);
  const float* lse_row = lse + (long long)blockIdx.y * s.Tq;
  const float* dvec_row = dvec + (long long)blockIdx.y * s.Tq;

  load_tile_async(sK, head_ptr(k, b, h, s.Tk, s), k0, s.Tk, s.stride);
  load_tile_async(sV, head_ptr(v, b, h, s.Tk, s), k0, s.Tk, s.stride);
  load_tile_async(sQ[0], q_head, first * kTile, s.Tq, s.stride);
  load_tile_async(sdO[0], do_head, first * kTile, s.Tq, s.stride);
  load_stats_async(sLse[0], sDvec[0], lse_row, dvec_row, first * kTile, s.Tq);
  cp_async_commit();

  uint32_t ka[2][4], va[2][4];
  float dk[kDBlocks][4], dv[kDBlocks][4];
#pragma unroll
  for (int dn = 0; dn < kDBlocks; dn++)
#pragma unroll
    for (int i = 0; i < 4; i++) dk[dn][i] = dv[dn][i] = 0.0f;

  for (int qt = first; qt < last; qt++) {
    const int stage = (qt - first) & 1, q0 = qt * kTile;
    if (qt + 1 < last) {
      load_tile_async(sQ[stage ^ 1], q_head, q0 + kTile, s.Tq, s.stride);
      load_tile_async(sdO[stage ^ 1], do_head, q0 + kTile, s.Tq, s.stride);
      load_stats_async(sLse[stage ^ 1], sDvec[stage ^ 1], lse_row, dvec_row, q0 + kTile, s.Tq);
    }
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();
    if (qt == first) {
      Tiles::load_a_frags(ka, sK + warp * kWarpRows * kPitch, lane);
      Tiles::load_a_frags(va, sV + warp * kWarpRows * kPitch, lane);
    }

    if (warp_active && warp_keys_see_tile(kw0, q0, s.Tq, s.offset)) {
      const float* tile_lse = sLse[stage];
      const float* tile_dvec = sDvec[stage];
      float p[kNBlocks][4];
      Tiles::mma_rows_by_tile_t(p, ka, sQ[stage], lane);  // S^T: rows keys, columns queries
#pragma unroll
      for (int nb = 0; nb < kNBlocks; nb++)
#pragma unroll
        for (int i = 0; i < 4; i++) {
          const int col = nb * 8 + c_col(lane, i);
          p[nb][i] = exp2f(fmaf(p[nb][i], scale_log2, -tile_lse[col] * kLog2e));
        }
      if (warp_keys_need_mask(kw0, q0, s.Tq, s.offset)) {
        set_masked(p, lane, 0.0f, kw0, q0, [&](int j, int i) { return masked_key_query(j, i, s.offset, s.Tq); });
      }
      Tiles::mma_acc_by_tile(dv, p, sdO[stage], lane);  // dV += P^T dO
      float ds[kNBlocks][4];
      Tiles::mma_rows_by_tile_t(ds, va, sdO[stage], lane);  // dP^T = V dO^T
#pragma unroll
      for (int nb = 0; nb < kNBlocks; nb++)
#pragma unroll
        for (int i = 0; i < 4; i++) ds[nb][i] = p[nb][i] * (ds[nb][i] - tile_dvec[nb * 8 + c_col(lane, i)]);
      Tiles::mma_acc_by_tile(dk, ds, sQ[stage], lane);  // dK += dS^T Q
    }
    __syncthreads();
  }
  cp_async_wait<0>();

  // The warp's own rows of sK and sV (read only before the loop's first products).
  uint16_t* dk_rows = sK + warp * kWarpRows * kPitch;
  uint16_t* dv_rows = sV + warp * kWarpRows * kPitch;
  stage_acc(dk_rows, dk, scale, scale, lane);
  stage_acc(dv_rows, dv, 1.0f, 1.0f, lane);
  __syncwarp();
  write_warp_rows(head_ptr(grad_k, b, h, s.Tk, s), dk_rows, kw0, s.Tk, s.stride, lane);
  write_warp_rows(head_ptr(grad_v, b, h, s.Tk, s), dv_rows, kw0, s.Tk, s.stride, lane);
}

// ---------------------------------------------------------------------------------------
// Host side
// ---------------------------------------------------------------------------------------

Dims shape_of(const char* op, const Tensor& q, const Tensor& k) {
  attention::check_attention_grid(op, q, k);
  Dims s;
  s.B = static_cast<int>(q.size(0));
  s.Tq = static_cast<int>(q.size(1));
  s.H = static_cast<int>(q.size(2));
  s.Tk = static_cast<int>(k.size(1));
  s.offset = s.Tk - s.Tq;
  s.stride = static_cast<long long>(s.H) * kHeadDim;
  return s;
}

unsigned row_blocks(int n) { return static_cast<unsigned>((n + kBlockRows - 1) / kBlockRows); }

}  // namespace

bool usable(std::initializer_list<const Tensor*> tensors) {
  return attention::tensor_core_usable(kernel_choices().flash_attention, tensors);
}

Tensor forward(const Tensor& q, const Tensor& k, const Tensor& v, float scale, Tensor* lse) {
  const Dims s = shape_of("causal_attention_forward", q, k);
  Tensor o = Tensor::empty(q.shape(), DType::BF16, Device::CUDA);
  Tensor lse_out = Tensor::empty({s.B, s.H, s.Tq}, DType::F32, Device::CUDA);
  if (s.B * s.H > 0) {
    flash_forward_kernel<<<dim3(row_blocks(s.Tq), s.B * s.H), kThreads, 0, cuda_stream()>>>(
        q.data<bf16>(), k.data<bf16>(), v.data<bf16>(), o.data<bf16>(), lse_out.data<float>(), s,
        scale * kLog2e);
    CUDA_CHECK_LAUNCH();
  }
  if (lse) *lse = lse_out;
  return o;
}

void backward(const Tensor& grad_o, const Tensor& q, const Tensor& k, const Tensor& v,
              const Tensor& o, const Tensor& lse, float scale, Tensor& grad_q, Tensor& grad_k,
              Tensor& grad_v) {
  const Dims s = shape_of("causal_attention_backward", q, k);
  grad_q = Tensor::empty(q.shape(), DType::BF16, Device::CUDA);
  grad_k = Tensor::empty(k.shape(), DType::BF16, Device::CUDA);
  grad_v = Tensor::empty(v.shape(), DType::BF16, Device::CUDA);
  if (s.B * s.H == 0) return;
  Tensor dvec = Tensor::empty({s.B, s.H, s.Tq}, DType::F32, Device::CUDA);
  const long long rows = (long long)s.B * s.Tq * s.H;
  flash_dvec_kernel<<<blocks_for(rows, 256), 256, 0, cuda_stream()>>>(
      grad_o.data<bf16>(), o.data<bf16>(), dvec.data<float>(), s);
  CUDA_CHECK_LAUNCH();
  flash_backward_dq_kernel<<<dim3(row_blocks(s.Tq), s.B * s.H), kThreads, 0, cuda_stream()>>>(
      grad_o.data<bf16>(), q.data<bf16>(), k.data<bf16>(), v.data<bf16>(), lse.data<float>(),
      dvec.data<float>(), grad_q.data<bf16>(), s, scale, scale * kLog2e);
  CUDA_CHECK_LAUNCH();
  flash_backward_dkdv_kernel<<<dim3(row_blocks(s.Tk), s.B * s.H), kThreads, 0, cuda_stream()>>>(
      grad_o.data<bf16>(), q.data<bf16>(), k.data<bf16>(), v.data<bf16>(), lse.data<float>(),
      dvec.data<float>(), grad_k.data<bf16>(), grad_v.data<bf16>(), s, scale, scale * kLog2e);
  CUDA_CHECK_LAUNCH();
}

}  // namespace iflame::ops::cuda::flash
