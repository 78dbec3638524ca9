// cuda/linear_attention_bf16.cu: decayed linear attention on the tensor cores, for
// bf16 q/k/v with head dim 32 (the chunked algorithm of Lightning Attention-2,
// written with mma.sync.m16n8k16 bf16 x bf16 -> f32 and ldmatrix, as the softmax
// kernels of flash_attention_bf16.cu are).
//
// Every pass, forward and backward, is one decayed causal product over positions
// (ops/cuda/linear_attention_bf16.h gives the formulas and the passes):
//   out_p = sum_{p' <= p} exp(-s (p - p')) (a_p . b_p') c_p'
// One block of 4 warps per (b, h) and pass walks the sequence in chunks of 64
// positions; the chunk's rows of a, b and c stream through shared memory two
// stages deep (cp.async: the next chunk is copied while this one is computed), in
// 64 x 32 bf16 tiles whose rows are 40 bf16 (80 bytes) apart, so every ldmatrix
// and every 4-byte store is free of bank conflicts. Warp w owns the chunk's rows
// 16w .. 16w+15 and computes, per chunk:
//   1. out = decay[r+1] (a S): a's fragments stay in registers for the chunk, S (the
//      32 x 32 state carried from earlier chunks) comes as bf16 by ldmatrix.trans;
//   2. the scores a b^T against the keys its rows see (2w+2 blocks of 8 keys: the
//      chunk is causal inside, so warp 0 computes 1/4 of what warp 3 does), each
//      multiplied in f32 by decay[r-j] from a shared table of exp(-s n), n = 0..64,
//      and masked (j > r) in the two blocks on the diagonal;
//   3. out += P c, P being those accumulators reused in place as A operands (the
//      accumulator layout is the A layout) and c coming by ldmatrix.trans;
//   4. out is staged as bf16 in the warp's own rows of the a tile and written 16
//      bytes a lane (rows past T are never stored; the reversed passes store row p
//      at time T-1-p);
//   5. unless the chunk is the last: S <- decay[64] S + sum_j decay[63-j] b_j^T c_j.
//      S lives in f32 as accumulators, warp w owning the 16 x 16 block at rows
//      16 (w >> 1), columns 16 (w & 1); the A operand b^T comes by ldmatrix.trans
//      straight from the b tile (ldsm_kmajor_a_*), is weighted by decay[63-j] in
//      f32 and re-rounded; c by ldmatrix.trans. The new S is written as bf16 to the
//      other of two shared copies, which the next chunk's step 1 reads.
// Two barriers per chunk (the tiles have arrived; everyone is done with the stage
// before it is refilled); the double-buffered S needs no third.
// Positions past T in the last chunk are zero rows (cp.async zero-fill): they add
// nothing to any row that is stored, and the state after the last chunk, the only
// one they would reach, is never computed. The backward runs its three passes as
// one launch of 3 B H blocks; no atomics, so it is deterministic.
//
// Roundings. The inputs are bf16 and enter the products exactly; every product
// accumulates in f32, the decay factors are f32 and so is the state S (the
// accumulators of step 5 are the state: it is never re-rounded, so rounding errors
// do not compound from chunk to chunk). Three f32 intermediates become bf16
// operands, each rounded once (relative error at most u = 2^-8 per element):
//  - P = decay[r-j] (a_r . b_j) for P c, as FlashAttention-2 rounds its probabilities;
//  - decay[63-j] b_j for the update b^T c: its error enters S once per term;
//  - the copy of S used for a S (the f32 S stays in the accumulators).
// So the error of out_p is at most u sum_{p'} w |a_p . b_p'| |c_p'| over the chunk's
// own rows (P), 2u times the same sum over earlier rows (S's copy, and the update's
// operand), and the output's own rounding u |out_p|, plus f32 summation: the bound
// tests/test_attention.cpp checks elementwise. With terms of random signs each
// rounding costs a fraction of u relative, the size of the bf16 output's own
// rounding: keeping S or P at higher precision (a hi + lo pair of bf16, twice the
// products) would buy nothing visible in a bf16 output.
//
// Resources (nvcc 13.0, sm_90, -Xptxas -v): 112 registers, no stack or spills,
// 36,100 bytes of static shared memory (3 tiles x 2 stages x 5,120, 2 x 2,560 for S,
// the decay table), so 4 blocks (16 warps) fit on a multiprocessor; 48 mma.sync per
// warp and chunk at most (warp 3: 8 for a S, 16 scores, 16 for P c, 8 for the update).
#include "ops/cuda/linear_attention_bf16.h"

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

namespace iflame::ops::cuda::linear_bf16 {

namespace {

using namespace mma;  // the PTX wrappers and fragment layouts

constexpr int kPitch = kSharedPitch;            // bf16 per shared row (80 bytes)
constexpr int kTileElems = kChunk * kPitch;     // one 64-row tile
constexpr int kStateElems = kHeadDim * kPitch;  // the 32 x 32 state as bf16
constexpr int kPieces = kHeadDim / 8;           // 16-byte pieces per row
constexpr int kNBlocks = kChunk / 8;            // 8-key accumulators across a chunk
constexpr int kDBlocks = kHeadDim / 8;          // 8-column accumulators across the head dim
static_assert(kHeadDim == 32, "the fragment loops are written for two k-steps of 16");
static_assert((kChunk * kPieces) % kThreads == 0, "tile copies split evenly over the threads");
static_assert(kWarps == 4, "the state's 16 x 16 blocks are one per warp");
// Blocks per multiprocessor the register budget must allow: 4 caps the kernel at 128
// registers (112 used, no spills; 143 unbounded, which allows 3). The backward
// launches 3 B H blocks (768 at B = H = 16 on 132 multiprocessors).
constexpr int kMinBlocksPerSM = 4;

using Pass = ProductPass<bf16>;
using Passes = ProductPasses<bf16>;

// ---------------------------------------------------------------------------------------
// Tiles and the warp's products
// ---------------------------------------------------------------------------------------

// The tile loops (mma_tiles.cuh) on this file's tiles: kChunk rows, kPitch apart.
using Tiles = mma::SharedTiles<kPitch, kChunk, kThreads>;

// Queues the copy of positions [first, first + kChunk) of one head into a shared
// tile, zero rows for positions >= T; position p is read from time time_of(p).
__device__ __forceinline__ void load_tile_async(uint16_t* tile, const bf16* head, int first, int T,
                                                bool reverse, long long stride) {
  Tiles::load_rows_async(tile, head, first, T, stride, [=](int p) { return time_of(p, T, reverse); });
}

// acc (16 x 32) = A (the warp's rows, 16 x 32 fragments) times the shared 32 x 32
// state (bf16, stored [e][d]: k-major, as V in P V).
__device__ __forceinline__ void mma_rows_by_state(float (&acc)[kDBlocks][4], const uint32_t (&a)[2][4],
                                                  const uint16_t* state, int lane) {
  const uint32_t base = smem_addr(state + ldsm_block_row(lane) * kPitch + ldsm_block_col(lane));
#pragma unroll
  for (int dn = 0; dn < kDBlocks; dn++) acc[dn][0] = acc[dn][1] = acc[dn][2] = acc[dn][3] = 0.0f;
#pragma unroll
  for (int ks = 0; ks < kHeadDim / 16; ks++)
#pragma unroll
    for (int dn = 0; dn < kHeadDim / 16; dn++) {
      uint32_t b[4];
      ldsm_x4_trans(b, base + (ks * 16 * kPitch + dn * 16) * 2);
      mma_bf16(acc[2 * dn], a[ks], b[0], b[1]);
      mma_bf16(acc[2 * dn + 1], a[ks], b[2], b[3]);
    }
}

// The warp's block of S (two accumulators: columns d0 .. d0+7 and d0+8 .. d0+15) <-
// decay[64] S + sum_j decay[63-j] b_j^T c_j over the chunk's 64 rows j.
__device__ __forceinline__ void update_state(float (&st)[2][4], const uint16_t* tile_b,
                                             const uint16_t* tile_c, const float* decay, int warp,
                                             int lane) {
  const int e0 = state_block_row(warp), d0 = state_block_col(warp);
  const float keep = decay[kChunk];
#pragma unroll
  for (int n = 0; n < 2; n++)
#pragma unroll
    for (int i = 0; i < 4; i++) st[n][i] *= keep;
  const uint32_t a_base = smem_addr(tile_b + ldsm_kmajor_a_row(lane) * kPitch + e0 + ldsm_kmajor_a_col(lane));
  const uint32_t c_base = smem_addr(tile_c + ldsm_block_row(lane) * kPitch + d0 + ldsm_block_col(lane));
#pragma unroll
  for (int kk = 0; kk < kChunk / 16; kk++) {
    uint32_t a[4], c[4];
    ldsm_x4_trans(a, a_base + kk * 16 * kPitch * 2);  // A[e][j] = b[j][e], j = 16 kk ..
#pragma unroll
    for (int r = 0; r < 4; r++) {
      const int j = kk * 16 + a_col(lane, r);
      a[r] = pack_bf16x2(bf16x2_lo(a[r]) * decay[state_decay_index(j)],
                         bf16x2_hi(a[r]) * decay[state_decay_index(j + 1)]);
    }
    ldsm_x4_trans(c, c_base + kk * 16 * kPitch * 2);
    mma_bf16(st[0], a, c[0], c[1]);
    mma_bf16(st[1], a, c[2], c[3]);
  }
}

// The warp's block of S as bf16 into the shared [e][d] copy.
__device__ __forceinline__ void store_state(uint16_t* state, const float (&st)[2][4], int warp, int lane) {
  const int e0 = state_block_row(warp), d0 = state_block_col(warp);
#pragma unroll
  for (int n = 0; n < 2; n++)
#pragma unroll
    for (int half = 0; half < 2; half++) {
      const int i = 2 * half;
      uint16_t* at = state + (e0 + c_row(lane, i)) * kPitch + d0 + 8 * n + c_col(lane, i);
      *reinterpret_cast<uint32_t*>(at) = pack_bf16x2(st[n][i], st[n][i + 1]);
    }
}

// A 16 x 32 accumulator as bf16 into 16 shared rows.
__device__ __forceinline__ void stage_acc(uint16_t* rows, const float (&acc)[kDBlocks][4], int lane) {
#pragma unroll
  for (int dn = 0; dn < kDBlocks; dn++)
#pragma unroll
    for (int half = 0; half < 2; half++) {
      const int i = 2 * half;
      uint16_t* at = rows + c_row(lane, i) * kPitch + dn * 8 + c_col(lane, i);
      *reinterpret_cast<uint32_t*>(at) = pack_bf16x2(acc[dn][i], acc[dn][i + 1]);
    }
}

// 16 staged shared rows -> positions first .. first + 15 (those < T), 16 bytes a lane.
__device__ __forceinline__ void write_warp_rows(bf16* head, const uint16_t* rows, int first, int T,
                                                bool reverse, long long stride, int lane) {
#pragma unroll
  for (int it = 0; it < kWarpRows * kPieces / 32; it++) {
    const int piece = lane + 32 * it;
    const int r = piece / kPieces, part = piece % kPieces;
    const int p = first + r;
    if (p < T) {
      *reinterpret_cast<uint4*>(head + (long long)time_of(p, T, reverse) * stride + part * 8) =
          *reinterpret_cast<const uint4*>(rows + r * kPitch + part * 8);
    }
  }
}

// ---------------------------------------------------------------------------------------
// The kernel: grid (passes.count * B * H), kThreads threads.
// ---------------------------------------------------------------------------------------

__global__ void __launch_bounds__(kThreads, kMinBlocksPerSM)
    decayed_product_kernel(Passes passes, Slopes slopes, int T, int H) {
  __shared__ __align__(128) uint16_t sA[2][kTileElems];
  __shared__ __align__(128) uint16_t sB[2][kTileElems];
  __shared__ __align__(128) uint16_t sC[2][kTileElems];
  __shared__ __align__(128) uint16_t sS[2][kStateElems];
  __shared__ float decay[kChunk + 1];  // decay[n] = exp(-s n)

  const int which = pass_of_block(blockIdx.x, passes.count);
  const int bh = head_of_block(blockIdx.x, passes.count);
  // (Selected by branches: indexing the parameter array would copy it to local memory.)
  const Pass job = which == 0 ? passes.pass[0] : which == 1 ? passes.pass[1] : passes.pass[2];
  const int b = bh / H, h = bh % H;
  const long long stride = (long long)H * kHeadDim;
  const long long head = (long long)b * T * stride + (long long)h * kHeadDim;
  const bf16* a_head = job.a + head;
  const bf16* b_head = job.b + head;
  const bf16* c_head = job.c + head;
  bf16* out_head = job.out + head;
  const bool reverse = job.reverse != 0;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int r0 = warp_first_row(warp);
  const int n_chunks = chunk_count(T);

  for (int i = threadIdx.x; i <= kChunk; i += kThreads) decay[i] = expf(-slopes.s[h] * (float)i);

  load_tile_async(sA[0], a_head, 0, T, reverse, stride);
  load_tile_async(sB[0], b_head, 0, T, reverse, stride);
  load_tile_async(sC[0], c_head, 0, T, reverse, stride);
  cp_async_commit();

  float state[2][4];  // this warp's 16 x 16 block of S, f32
#pragma unroll
  for (int n = 0; n < 2; n++) state[n][0] = state[n][1] = state[n][2] = state[n][3] = 0.0f;

  for (int ch = 0; ch < n_chunks; ch++) {
    const int stage = ch & 1, c0 = ch * kChunk;
    if (ch + 1 < n_chunks) {  // the stage computed on in chunk ch - 1, released by its barrier
      load_tile_async(sA[stage ^ 1], a_head, c0 + kChunk, T, reverse, stride);
      load_tile_async(sB[stage ^ 1], b_head, c0 + kChunk, T, reverse, stride);
      load_tile_async(sC[stage ^ 1], c_head, c0 + kChunk, T, reverse, stride);
    }
    cp_async_commit();  // possibly empty: keeps "all but the newest group" meaning chunk ch
    cp_async_wait<1>();
    __syncthreads();  // chunk ch's tiles, the decay table and S from chunk ch - 1 are visible

    uint16_t* a_rows = sA[stage] + r0 * kPitch;  // only this warp reads (and then reuses) them
    uint32_t af[2][4];
    Tiles::load_a_frags(af, a_rows, lane);

    // 1. Everything before the chunk: out = decay[r+1] (a_r S).
    float acc[kDBlocks][4];
    if (ch > 0) {
      mma_rows_by_state(acc, af, sS[stage], lane);
      const float f_lo = decay[inter_decay_index(r0 + group_of(lane))];
      const float f_hi = decay[inter_decay_index(r0 + group_of(lane) + 8)];
#pragma unroll
      for (int dn = 0; dn < kDBlocks; dn++) {
        acc[dn][0] *= f_lo;
        acc[dn][1] *= f_lo;
        acc[dn][2] *= f_hi;
        acc[dn][3] *= f_hi;
      }
    } else {
#pragma unroll
      for (int dn = 0; dn < kDBlocks; dn++) acc[dn][0] = acc[dn][1] = acc[dn][2] = acc[dn][3] = 0.0f;
    }

    // 2. Decayed, masked scores of the keys this warp's rows see.
    const int blocks = score_blocks(warp);
    float p[kNBlocks][4];
    Tiles::mma_rows_by_tile_t(p, af, sB[stage], lane, blocks);
#pragma unroll
    for (int nb = 0; nb < kNBlocks; nb++) {
      if (nb < blocks) {
        const bool masked = score_block_needs_mask(warp, nb);
#pragma unroll
        for (int i = 0; i < 4; i++) {
          const int r = r0 + c_row(lane, i), j = nb * 8 + c_col(lane, i);
          p[nb][i] = (!masked || chunk_sees(r, j)) ? p[nb][i] * decay[r - j] : 0.0f;
        }
      }
    }

    // 3. out += P c.
    Tiles::mma_acc_by_tile(acc, p, sC[stage], lane, value_steps(warp));

    // 4. out -> bf16 -> global, through the warp's own rows of the a tile.
    __syncwarp();
    stage_acc(a_rows, acc, lane);
    __syncwarp();
    write_warp_rows(out_head, a_rows, c0 + r0, T, reverse, stride, lane);

    // 5. The state after this chunk, for the next one.
    if (ch + 1 < n_chunks) {
      update_state(state, sB[stage], sC[stage], decay, warp, lane);
      store_state(sS[stage ^ 1], state, warp, lane);
    }
    __syncthreads();  // everyone is done with this stage before it is refilled
  }
  cp_async_wait<0>();
}

// ---------------------------------------------------------------------------------------
// Host side
// ---------------------------------------------------------------------------------------

const Tensor& operand(Operand which, const Tensor& grad_o, const Tensor& q, const Tensor& k,
                      const Tensor& v) {
  switch (which) {
    case Operand::GradO: return grad_o;
    case Operand::Q: return q;
    case Operand::K: return k;
    case Operand::V: return v;
  }
  return q;
}

Pass make_pass(const PassSpec& spec, const Tensor& grad_o, const Tensor& q, const Tensor& k,
               const Tensor& v, Tensor& out) {
  return {operand(spec.a, grad_o, q, k, v).data<bf16>(), operand(spec.b, grad_o, q, k, v).data<bf16>(),
          operand(spec.c, grad_o, q, k, v).data<bf16>(), out.data<bf16>(), spec.reverse ? 1 : 0};
}

// Runs passes.count passes over q-shaped tensors [B, T, H, 32].
void launch(const char* op, const Passes& passes, const Tensor& like, const std::vector<float>& slopes) {
  const Slopes packed = pack_slopes(op, slopes);
  const long long bh = like.size(0) * like.size(2);
  IFLAME_CHECK(bh * passes.count <= 0x7fffffffLL && like.size(1) < (1LL << 30), op,
               ": tensor too large for the CUDA kernel: ", like.describe());
  if (bh == 0) return;
  decayed_product_kernel<<<static_cast<unsigned>(bh * passes.count), kThreads, 0, cuda_stream()>>>(
      passes, packed, static_cast<int>(like.size(1)), static_cast<int>(like.size(2)));
  CUDA_CHECK_LAUNCH();
}

}  // namespace

Slopes pack_slopes(const char* op, const std::vector<float>& slopes) {
  IFLAME_CHECK(slopes.size() <= static_cast<size_t>(kMaxHeads), op, ": at most ", kMaxHeads,
               " heads are supported by the CUDA kernel, got ", slopes.size());
  Slopes packed{};
  for (size_t h = 0; h < slopes.size(); h++) packed.s[h] = slopes[h];
  return packed;
}

bool usable(std::initializer_list<const Tensor*> tensors) {
  return attention::tensor_core_usable(kernel_choices().linear_attention_mma, tensors);
}

Tensor forward(const Tensor& q, const Tensor& k, const Tensor& v, const std::vector<float>& slopes) {
  Tensor o = Tensor::empty(q.shape(), DType::BF16, Device::CUDA);
  Passes passes{};
  passes.count = 1;
  passes.pass[0] = make_pass(kForwardPass, q, q, k, v, o);  // (grad_o unused)
  launch("linear_attention_forward", passes, q, slopes);
  return o;
}

void backward(const Tensor& grad_o, const Tensor& q, const Tensor& k, const Tensor& v,
              const std::vector<float>& slopes, Tensor& grad_q, Tensor& grad_k, Tensor& grad_v) {
  grad_q = Tensor::empty(q.shape(), DType::BF16, Device::CUDA);
  grad_k = Tensor::empty(k.shape(), DType::BF16, Device::CUDA);
  grad_v = Tensor::empty(v.shape(), DType::BF16, Device::CUDA);
  Tensor* outputs[3] = {&grad_q, &grad_k, &grad_v};
  Passes passes{};
  passes.count = 3;
  for (int i = 0; i < 3; i++) passes.pass[i] = make_pass(kBackwardPasses[i], grad_o, q, k, v, *outputs[i]);
  launch("linear_attention_backward", passes, q, slopes);
}

}  // namespace iflame::ops::cuda::linear_bf16
