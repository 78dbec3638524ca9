// cuda/persistent_decode.cu: the persistent decoding step (ops/persistent_decode.h):
// one cooperative launch per position, every block resident, grid-wide barriers
// (cooperative_groups' grid.sync(), which fences memory) between dependent phases.
//
// Memory: weights are read-only for the whole kernel and go through the
// read-only path (__ldg); everything the kernel itself writes (the residual
// stream, q|k|v, attention outputs, the gate, split partials, hourglass buffers)
// is read with __ldcg (L2, never a stale L1 or read-only-cache line), since a
// phase reads what other blocks wrote in the phase before.
//
// Work split: in a product phase warp w of the grid computes output rows w, w +
// warps, ... (each a bf16 weight row read once, 8 values per 16-byte load,
// lanes interleaved, f32 sums, a warp shuffle reduction: the summation order of
// ops/cuda/small_product.cu); a block stages its B input rows in shared memory
// first (f32 rounded to bf16, with the RMSNorm that precedes the product fused
// in), and a block with no row in a phase skips it. Softmax attention: a block
// per (row, head, split of the cached rows), online softmax per thread as
// ops/cuda/cached_attention.cu, the splits merged by every block that stages
// the out_proj input. Linear attention: a warp per (row, head), the state step
// of ops/cuda/linear_attention.cu. The hourglass glue (skip copies, group
// slots, pooling, the scaled skip adds) runs element-wise over the grid.
#include <cooperative_groups.h>

#include <algorithm>
#include <cmath>

#include "ops/cuda/attention_util.cuh"
#include "ops/cuda/elem_util.cuh"
#include "ops/persistent_decode.h"
#include "ops/rope.h"

namespace iflame::ops::cuda {

namespace cg = cooperative_groups;

namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kMaxRows = kPersistentMaxBatch;
constexpr int kHead = 32;  // head width
static_assert(kHead == attention::kHeadDim, "the shared attention helpers (attention_util.cuh) take rows of kHeadDim");
constexpr int kHalf = kHead / 2;
constexpr int kMaxHeads = 32;
constexpr int kSplitRows = 128;          // cached rows a split of softmax attention takes at least
constexpr int kMaxSplits = 32;
constexpr int kPartial = kHead + 2;      // a split's (M, l, acc[32])
constexpr int kUnroll = 4;               // weight words a lane has in flight per row
constexpr int kBlocksPerSm = 2;          // at most: more blocks make every barrier slower
constexpr long long kAttentionPrefetch = 8LL << 20;  // bytes of K/V rows asked of L2 ahead of an attention phase
constexpr float kLog2e = 1.4426950408889634f;
// Shared memory of a softmax-attention unit: q and the new k|v row, then the
// per-thread (m, l, acc[32]) of the block merge (acc rows padded to 33).
constexpr int kAttentionShared = 3 * kHead + 2 * kThreads + kThreads * (kHead + 1);

// One transformer block as the kernel reads it (device pointers).
struct BlockPlan {
  const bf16 *qkv, *out, *ff12, *ff3;
  const float *ff12_bias, *ff3_bias, *norm1, *norm2, *attn_norm;
  bf16 *k_cache, *v_cache;
  float* state;
  float norm1_eps, norm2_eps, attn_norm_eps;
  int full, capacity, hidden;  // hidden: the padded feed-forward width F'
  float decay[kMaxHeads];      // exp(-slope) per head, as the host computes it
};

// The kernel's argument: the whole step's description, passed by value.
struct StepArgs {
  const BlockPlan* blocks;
  int stage_first[6], stage_count[6];
  int B, d, H, HD, V, max_splits;
  const float *embedding, *norm, *skip_weights, *output_bias;
  float norm_eps;
  const bf16* output;
  int* position;
  int position_stride, position_count;
  float *group0, *group1, *skip0, *skip1, *out1, *out2, *logits;
  float *x, *h, *qkv, *att, *gate, *partial;  // scratch of the step
  float freq[kHalf];
  float scale_log2;
  const int* tokens;
  int phase;
};

// A value written during this kernel, read from L2.
__device__ __forceinline__ float ld(const float* p) { return __ldcg(p); }

__device__ __forceinline__ int level_position(const StepArgs& a, int b, int div) {
  return a.position[b * a.position_stride] / div;
}

__device__ __forceinline__ bool block_has_rows(int outputs) { return blockIdx.x * kWarps < outputs; }

__device__ __forceinline__ int split_count(int length, int max_splits) {
  const int s = (length + kSplitRows - 1) / kSplitRows;
  return s < max_splits ? s : max_splits;
}

// xs [B, K] = rows of x, rounded to bf16 as the products round their input;
// with `norm`, each row's RMSNorm first, its sums in rms_norm.cu's order.
__device__ void stage_rows(float* xs, const float* x, int B, int K, const float* norm, float eps) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (norm) {
    for (int b = warp; b < B; b += kWarps) {
      const float* row = x + (long long)b * K;
      float sum_sq = 0.0f;
      for (int j = lane; j < K; j += 32) {
        const float v = ld(row + j);
        sum_sq += v * v;
      }
      sum_sq = warp_sum(sum_sq);
      const float inv = 1.0f / sqrtf(sum_sq / (float)K + eps);
      for (int j = lane; j < K; j += 32) xs[b * K + j] = round_to_bf16(ld(row + j) * inv * norm[j]);
    }
  } else {
    for (int i = threadIdx.x; i < B * K; i += blockDim.x) xs[i] = round_to_bf16(ld(x + i));
  }
  __syncthreads();
}

// acc += the 8 products of w's bf16 and x[0..8) (shared memory, 16-byte
// aligned: two 16-byte reads), in small_product.cu's order.
__device__ __forceinline__ void add_bf16x8(float* acc, const uint4 w, const float* x) {
  float wf[8];
  unpack_bf16x8(w, wf);
  const float4 lo = *reinterpret_cast<const float4*>(x), hi = *reinterpret_cast<const float4*>(x + 4);
  const float xs[8] = {lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w};
#pragma unroll
  for (int i = 0; i < 8; i++) *acc = fmaf(wf[i], xs[i], *acc);
}

// Asks L2 for the weight rows this warp takes in a later product phase
// (product_rows' assignment of rows), 128-byte lines, lanes interleaved: issued
// before a barrier, the lines come in while the grid waits, so the next product
// phase starts from L2 instead of HBM. No effect on any value.
__device__ void prefetch_rows(const bf16* W, int K, int outputs, bool gate) {
  const int lane = threadIdx.x % 32, lines = (K * (int)sizeof(bf16) + 127) / 128;
  for (int out = blockIdx.x * kWarps + threadIdx.x / 32; out < outputs; out += gridDim.x * kWarps)
    for (int l = lane; l < lines; l += 32) {
      const char* a = reinterpret_cast<const char*>(W + (long long)out * K) + l * 128;
      asm volatile("prefetch.global.L2 [%0];" ::"l"(a));
      if (gate) {
        const char* c = reinterpret_cast<const char*>(W + (long long)(out + outputs) * K) + l * 128;
        asm volatile("prefetch.global.L2 [%0];" ::"l"(c));
      }
    }
}

// Weight words chunk + 32 u (u < kUnroll) of rows wa and wc (wc only with
// `gate`), zero past the row's chunks.
__device__ __forceinline__ void load_words(const uint4* wa, const uint4* wc, int first, int chunks, bool gate,
                                           uint4 (&va)[kUnroll], uint4 (&vc)[kUnroll]) {
#pragma unroll
  for (int u = 0; u < kUnroll; u++) {
    const int chunk = first + 32 * u;
    va[u] = chunk < chunks ? __ldg(wa + chunk) : make_uint4(0, 0, 0, 0);
    vc[u] = chunk < chunks && gate ? __ldg(wc + chunk) : make_uint4(0, 0, 0, 0);
  }
}

// Asks L2 for `bytes` from base on, 128-byte lines spread over every thread of the grid.
__device__ void prefetch_lines(const void* base, long long bytes) {
  const char* p = static_cast<const char*>(base);
  const long long stride = (long long)gridDim.x * blockDim.x * 128;
  for (long long i = ((long long)blockIdx.x * blockDim.x + threadIdx.x) * 128; i < bytes; i += stride)
    asm volatile("prefetch.global.L2 [%0];" ::"l"(p + i));
}

// What the attention phase of blk will read besides q|k|v, asked of L2 before the
// barrier ahead of it: the linear-attention states, or the first cached K and V
// rows of each split (all heads: a split's rows are one contiguous run), at most
// kAttentionPrefetch bytes in all, so a long cache cannot push out of L2 what
// the prefetch brought in before it is read. No effect on any value.
__device__ void prefetch_attention_inputs(const StepArgs& a, const BlockPlan& blk, int div) {
  if (!blk.full) {
    prefetch_lines(blk.state, (long long)a.B * a.H * kHead * kHead * (long long)sizeof(float));
    return;
  }
  const long long row_elems = (long long)a.H * kHead, row_bytes = row_elems * (long long)sizeof(bf16);
  for (int b = 0; b < a.B; b++) {
    const int length = min(level_position(a, b, div) + 1, blk.capacity);
    const int splits = split_count(length, a.max_splits), chunk = (length + splits - 1) / splits;
    const long long budget = kAttentionPrefetch / (2 * row_bytes * a.B * splits);  // rows per split, K and V each
    for (int s = 0; s < splits; s++) {
      const long long first = (long long)s * chunk;
      const long long rows = min(min((long long)chunk, length - first), budget > 0 ? budget : 1);
      if (rows <= 0) continue;
      const long long offset = ((long long)b * blk.capacity + first) * row_elems;
      prefetch_lines(blk.k_cache + offset, rows * row_bytes);
      prefetch_lines(blk.v_cache + offset, rows * row_bytes);
    }
  }
}

// A product phase of a block with rows in it: the grid's warps over the output
// rows of W [N, K] (bf16) times the rows that stage() puts in xs;
// epilogue(b, n, a, c) gets a = sum_k xs[b, k] W[n, k] + bias[n], and with
// `gate` (outputs = N / 2 pairs) c, the same for row n + outputs. The first
// weight words of the warp's first row are loaded before stage() runs (every
// thread of the block calls it): the weights do not depend on the staged rows,
// so their loads and the staging's overlap. Sums in small_product.cu's order.
template <typename Stage, typename Epilogue>
__device__ void product_rows(const float* xs, const bf16* W, const float* bias, int B, int K, int outputs, bool gate,
                             Stage stage, Epilogue epilogue) {
  const int lane = threadIdx.x % 32, chunks = K / 8;
  int out = blockIdx.x * kWarps + threadIdx.x / 32;
  uint4 va[kUnroll], vc[kUnroll];
  {
    const int row = out < outputs ? out : 0;
    load_words(reinterpret_cast<const uint4*>(W + (long long)row * K),
               reinterpret_cast<const uint4*>(W + (long long)(row + outputs) * K), lane, out < outputs ? chunks : 0,
               gate, va, vc);
  }
  stage();
  for (bool loaded = true; out < outputs; out += gridDim.x * kWarps, loaded = false) {
    const uint4* wa = reinterpret_cast<const uint4*>(W + (long long)out * K);
    const uint4* wc = reinterpret_cast<const uint4*>(W + (long long)(out + outputs) * K);  // read with `gate` only
    float acc_a[kMaxRows], acc_c[kMaxRows];
#pragma unroll
    for (int b = 0; b < kMaxRows; b++) acc_a[b] = acc_c[b] = 0.0f;
    for (int first = lane; first < chunks; first += 32 * kUnroll) {
      if (!loaded || first != lane) load_words(wa, wc, first, chunks, gate, va, vc);
#pragma unroll
      for (int u = 0; u < kUnroll; u++) {
        const int chunk = first + 32 * u;
        if (chunk >= chunks) break;
#pragma unroll
        for (int b = 0; b < kMaxRows; b++) {
          if (b >= B) break;
          add_bf16x8(&acc_a[b], va[u], xs + b * K + chunk * 8);
          if (gate) add_bf16x8(&acc_c[b], vc[u], xs + b * K + chunk * 8);
        }
      }
    }
#pragma unroll
    for (int b = 0; b < kMaxRows; b++) {
      if (b >= B) break;
      const float a = warp_sum(acc_a[b]) + (bias ? bias[out] : 0.0f);
      const float c = gate ? warp_sum(acc_c[b]) + (bias ? bias[out + outputs] : 0.0f) : 0.0f;
      if (lane == 0) epilogue(b, out, a, c);
    }
  }
}

// x[b] = RMSNorm(embedding[token b]): a warp per row (a token outside the
// vocabulary gives NaN, as embedding_forward does).
__device__ void embed_phase(const StepArgs& a) {
  const int lane = threadIdx.x % 32, b = blockIdx.x * kWarps + threadIdx.x / 32, d = a.d;
  if (b >= a.B) return;
  const int tok = a.tokens[b];
  const bool valid = tok >= 0 && tok < a.V;
  const float* row = a.embedding + (long long)(valid ? tok : 0) * d;
  float sum_sq = 0.0f;
  for (int j = lane; j < d; j += 32) {
    const float v = valid ? row[j] : NAN;
    sum_sq += v * v;
  }
  sum_sq = warp_sum(sum_sq);
  const float inv = 1.0f / sqrtf(sum_sq / (float)d + a.norm_eps);
  for (int j = lane; j < d; j += 32) a.x[(long long)b * d + j] = (valid ? row[j] : NAN) * inv * a.norm[j];
}

// Softmax attention at the level position p of each row: q, k rotated (RoPE)
// and rounded to bf16 as the caches store them, the new k|v row written to the
// caches (by split 0), then each split's online softmax over its rows into
// a.partial [B*H, max_splits, (M, l, acc)]. The new row is taken from shared
// memory, never read back from the cache it is being written to.
__device__ void softmax_attention_phase(const StepArgs& a, const BlockPlan& blk, int div, float* smem) {
  float* q_s = smem;                 // [32] q, times scale * log2(e)
  float* kv_s = smem + kHead;        // [64] the new k and v
  float* part_m = smem + 3 * kHead;  // [kThreads]
  float* part_l = part_m + kThreads;
  float* part_acc = part_l + kThreads;  // [kThreads][33]
  const int t = threadIdx.x, H = a.H, HD = a.HD, capacity = blk.capacity;
  const long long row_stride = (long long)H * kHead;
  const int units = a.B * H * a.max_splits;
  for (int unit = blockIdx.x; unit < units; unit += gridDim.x) {
    const int split = unit % a.max_splits, bh = unit / a.max_splits, b = bh / H, h = bh % H;
    const int pos = level_position(a, b, div);
    const int length = min(pos + 1, capacity);
    const int splits = split_count(length, a.max_splits);
    if (split >= splits) continue;  // the same for the whole block
    __syncthreads();                // the block's previous unit is done with the shared memory
    if (t < kHalf) {
      const float* row = a.qkv + (long long)b * 3 * HD + h * kHead;
      const float angle = (float)pos * a.freq[t];
      const float c = cosf(angle), s = sinf(angle);
      const float q1 = ld(row + t), q2 = ld(row + kHalf + t);
      const float k1 = ld(row + HD + t), k2 = ld(row + HD + kHalf + t);
      q_s[t] = round_to_bf16(q1 * c + q2 * s) * a.scale_log2;
      q_s[kHalf + t] = round_to_bf16(-q1 * s + q2 * c) * a.scale_log2;
      kv_s[t] = round_to_bf16(k1 * c + k2 * s);
      kv_s[kHalf + t] = round_to_bf16(-k1 * s + k2 * c);
      kv_s[kHead + t] = round_to_bf16(ld(row + 2 * HD + t));
      kv_s[kHead + kHalf + t] = round_to_bf16(ld(row + 2 * HD + kHalf + t));
    }
    __syncthreads();
    const long long head = (long long)b * capacity * row_stride + (long long)h * kHead;
    if (split == 0 && t < kHead && pos < capacity) {
      blk.k_cache[head + pos * row_stride + t] = float_to_bf16(kv_s[t]);
      blk.v_cache[head + pos * row_stride + t] = float_to_bf16(kv_s[kHead + t]);
    }
    float qr[kHead], acc[kHead];
#pragma unroll
    for (int e = 0; e < kHead; e++) {
      qr[e] = q_s[e];
      acc[e] = 0.0f;
    }
    float m = -INFINITY, l = 0.0f;
    const int chunk = (length + splits - 1) / splits;
    const int first = split * chunk, end = min(length, first + chunk);
    for (int j = first + t; j < end; j += kThreads) {
      float kr[kHead], vr[kHead];
      if (j == pos) {
#pragma unroll
        for (int e = 0; e < kHead; e++) kr[e] = kv_s[e], vr[e] = kv_s[kHead + e];
      } else {
        const uint4* kp = reinterpret_cast<const uint4*>(blk.k_cache + head + j * row_stride);
        const uint4* vp = reinterpret_cast<const uint4*>(blk.v_cache + head + j * row_stride);
#pragma unroll
        for (int i = 0; i < kHead / 8; i++) {
          unpack_bf16x8(kp[i], kr + 8 * i);
          unpack_bf16x8(vp[i], vr + 8 * i);
        }
      }
      attention::online_softmax_row(qr, kr, vr, m, l, acc);
    }
    // The block's merge: sums weighted by exp2(m - max m); a thread (or a whole
    // split) without rows has m = -inf and weighs 0.
    part_m[t] = m;
    __syncthreads();
    float M;
    const float w = attention::merge_weight(part_m, kThreads, m, M);
    part_l[t] = l * w;
#pragma unroll
    for (int e = 0; e < kHead; e++) part_acc[t * (kHead + 1) + e] = acc[e] * w;
    __syncthreads();
    if (t < kHead) {
      float sum = 0.0f, total = 0.0f;
      for (int i = 0; i < kThreads; i++) {
        sum += part_acc[i * (kHead + 1) + t];
        total += part_l[i];
      }
      float* mine = a.partial + ((long long)bh * a.max_splits + split) * kPartial;
      mine[2 + t] = sum;
      if (t == 0) {
        mine[0] = M;
        mine[1] = total;
      }
    }
  }
}

// xs [B, HD] = the softmax attention output: the splits merged (as
// cached_attention_combine_kernel merges them), rounded to bf16 as the layered
// path's bf16 attention output is stored.
__device__ void stage_softmax_output(float* xs, const StepArgs& a, const BlockPlan& blk, int div) {
  for (int i = threadIdx.x; i < a.B * a.HD; i += blockDim.x) {
    const int b = i / a.HD, c = i % a.HD, h = c / kHead, e = c % kHead;
    const int splits = split_count(min(level_position(a, b, div) + 1, blk.capacity), a.max_splits);
    const float* part = a.partial + (long long)(b * a.H + h) * a.max_splits * kPartial;
    float M = -INFINITY;
    for (int s = 0; s < splits; s++) M = fmaxf(M, ld(part + s * kPartial));
    float sum = 0.0f, total = 0.0f;
    for (int s = 0; s < splits; s++) {
      const float m = ld(part + s * kPartial);
      if (m == -INFINITY) continue;  // a split without rows
      const float w = exp2f(m - M);
      total += w * ld(part + s * kPartial + 1);
      sum += w * ld(part + s * kPartial + 2 + e);
    }
    xs[i] = round_to_bf16(sum / total);
  }
  __syncthreads();
}

// Linear attention at the level position: a warp per (row, head), lane = column
// of the state; linear_attention_step_kernel's arithmetic (no fused
// multiply-add in the update, o = q S summed in double), q, k, v in f32.
__device__ void linear_attention_phase(const StepArgs& a, const BlockPlan& blk, int div) {
  const int lane = threadIdx.x % 32, H = a.H, HD = a.HD;
  for (int unit = blockIdx.x * kWarps + threadIdx.x / 32; unit < a.B * H; unit += gridDim.x * kWarps) {
    const int b = unit / H, h = unit % H;
    const int pos = level_position(a, b, div);
    const float* row = a.qkv + (long long)b * 3 * HD + h * kHead;
    const int j = lane % kHalf;
    const float angle = (float)pos * a.freq[j];
    const float c = cosf(angle), s = sinf(angle);
    const float q1 = ld(row + j), q2 = ld(row + kHalf + j);
    const float k1 = ld(row + HD + j), k2 = ld(row + HD + kHalf + j);
    const float q_mine = lane < kHalf ? q1 * c + q2 * s : -q1 * s + q2 * c;
    const float k_mine = lane < kHalf ? k1 * c + k2 * s : -k1 * s + k2 * c;
    const float v_d = ld(row + 2 * HD + lane);
    const float decay = blk.decay[h];
    float* S = blk.state + (long long)unit * kHead * kHead;  // [B, H] order: unit = b * H + h
    float column[kHead];
#pragma unroll
    for (int e = 0; e < kHead; e++) column[e] = S[e * kHead + lane];
    const double out = attention::linear_state_step(S, column, decay, q_mine, k_mine, v_d, lane);
    a.att[(long long)b * HD + h * kHead + lane] = static_cast<float>(out);
  }
}

// One stage's blocks at level position p / div; x holds the stage's input and
// then its output. Five phases per block, a grid barrier after each; before
// each barrier the weights of the next product phase but one are prefetched to
// L2 (out_proj during q|k|v, proj1|proj2 during attention, and so on), and
// during q|k|v the caches or states the attention will read. Not
// inlined: one copy serves the six stages (ptxas takes minutes otherwise).
__device__ __noinline__ void run_stage(const StepArgs& a, int stage, int div, float* smem, cg::grid_group& grid) {
  const int B = a.B, d = a.d, HD = a.HD;
  for (int i = 0; i < a.stage_count[stage]; i++) {
    const BlockPlan& blk = a.blocks[a.stage_first[stage] + i];
    const int F = blk.hidden;
    if (block_has_rows(3 * HD)) {  // norm1, q|k|v
      product_rows(
          smem, blk.qkv, nullptr, B, d, 3 * HD, false, [&] { stage_rows(smem, a.x, B, d, blk.norm1, blk.norm1_eps); },
          [&](int b, int n, float v, float) { a.qkv[(long long)b * 3 * HD + n] = v; });
    }
    prefetch_attention_inputs(a, blk, div);
    prefetch_rows(blk.out, HD, d, false);
    grid.sync();
    if (blk.full)
      softmax_attention_phase(a, blk, div, smem);
    else
      linear_attention_phase(a, blk, div);
    prefetch_rows(blk.ff12, d, F, true);
    grid.sync();
    if (block_has_rows(d)) {  // [attn_norm,] out_proj, residual
      auto stage_input = [&] {
        if (blk.full)
          stage_softmax_output(smem, a, blk, div);
        else
          stage_rows(smem, a.att, B, HD, blk.attn_norm, blk.attn_norm_eps);
      };
      product_rows(smem, blk.out, nullptr, B, HD, d, false, stage_input, [&](int b, int n, float v, float) {
        const long long k = (long long)b * d + n;
        a.h[k] = ld(a.x + k) + v;
      });
    }
    prefetch_rows(blk.ff3, F, d, false);
    grid.sync();
    if (block_has_rows(F)) {  // norm2, proj1|proj2, gate
      product_rows(
          smem, blk.ff12, blk.ff12_bias, B, d, F, true, [&] { stage_rows(smem, a.h, B, d, blk.norm2, blk.norm2_eps); },
          [&](int b, int u, float g, float c) { a.gate[(long long)b * F + u] = g * sigmoid(g) * c; });
    }
    if (i + 1 < a.stage_count[stage]) prefetch_rows(a.blocks[a.stage_first[stage] + i + 1].qkv, d, 3 * HD, false);
    grid.sync();
    if (block_has_rows(d)) {  // proj3, bias, residual
      auto stage_input = [&] { stage_rows(smem, a.gate, B, F, nullptr, 0.0f); };
      product_rows(smem, blk.ff3, blk.ff3_bias, B, F, d, false, stage_input, [&](int b, int n, float v, float) {
        const long long k = (long long)b * d + n;
        a.x[k] = ld(a.h + k) + v;
      });
    }
    grid.sync();
  }
}

// The first q|k|v weights of a stage, before the barrier ahead of it.
__device__ void prefetch_stage(const StepArgs& a, int stage) {
  if (a.stage_count[stage] > 0) prefetch_rows(a.blocks[a.stage_first[stage]].qkv, a.d, 3 * a.HD, false);
}

// The hourglass glue, element by element over [B, d] (infer/decode.cpp's
// enqueue_step). The mean of a group of three takes the current slot from v
// (written by this same thread), avg_pool3_forward's sum in its order.
__device__ float pool3(const float* group, long long b, int j, int d, int slot, float v) {
  float sum = 0.0f;
  for (int t = 0; t < 3; t++) sum += t == slot ? v : ld(group + (b * 3 + t) * d + j);
  return sum / 3.0f;
}

// Which glue: after encoder_blocks.0, after encoder_blocks.1, after the
// bottleneck, after decoder_blocks.0.
enum Glue { kAfterEncoder0, kAfterEncoder1, kAfterBottleneck, kAfterDecoder0 };

__device__ void glue_phase(const StepArgs& a, Glue which) {
  const long long n = (long long)a.B * a.d;
  const float sw0 = a.skip_weights[0], sw1 = a.skip_weights[1];
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
    const long long b = i / a.d;
    const int j = (int)(i % a.d);
    const float v = ld(a.x + i);
    if (which == kAfterEncoder0) {  // skip0, its group slot; then decoder_blocks.1's or encoder_blocks.1's input
      const int slot = level_position(a, (int)b, 1) % 3;
      a.skip0[i] = v;
      a.group0[(b * 3 + slot) * a.d + j] = v;
      a.x[i] = a.phase == 0 ? sw1 * ld(a.out1 + i) + v : pool3(a.group0, b, j, a.d, slot, v);
    } else if (which == kAfterEncoder1) {  // skip1, its group slot; then decoder_blocks.0's or the bottleneck's input
      const int slot = level_position(a, (int)b, 3) % 3;
      a.skip1[i] = v;
      a.group1[(b * 3 + slot) * a.d + j] = v;
      a.x[i] = a.phase == 1 ? sw0 * ld(a.out2 + i) + v : pool3(a.group1, b, j, a.d, slot, v);
    } else if (which == kAfterBottleneck) {  // out2; decoder_blocks.0's input
      a.out2[i] = v;
      a.x[i] = sw0 * v + ld(a.skip1 + i);
    } else {  // out1; decoder_blocks.1's input
      a.out1[i] = v;
      a.x[i] = sw1 * v + ld(a.skip0 + i);
    }
  }
}

__global__ void __launch_bounds__(kThreads) persistent_decode_kernel(const StepArgs a) {
  extern __shared__ float4 shared_words[];  // float4: 16-byte aligned for add_bf16x8's reads
  float* smem = reinterpret_cast<float*>(shared_words);
  cg::grid_group grid = cg::this_grid();
  prefetch_stage(a, 0);
  embed_phase(a);
  grid.sync();
  run_stage(a, 0, 1, smem, grid);
  prefetch_stage(a, a.phase == 0 ? 5 : 1);
  glue_phase(a, kAfterEncoder0);
  grid.sync();
  if (a.phase >= 1) {
    run_stage(a, 1, 3, smem, grid);
    prefetch_stage(a, a.phase == 1 ? 4 : 2);
    glue_phase(a, kAfterEncoder1);
    grid.sync();
    if (a.phase == 2) {
      run_stage(a, 2, 9, smem, grid);
      run_stage(a, 3, 9, smem, grid);
      prefetch_stage(a, 4);
      glue_phase(a, kAfterBottleneck);
      grid.sync();
    }
    run_stage(a, 4, 3, smem, grid);
    prefetch_stage(a, 5);
    glue_phase(a, kAfterDecoder0);
    grid.sync();
  }
  run_stage(a, 5, 1, smem, grid);
  if (block_has_rows(a.V)) {  // output_proj (no norm before it)
    product_rows(
        smem, a.output, a.output_bias, a.B, a.d, a.V, false, [&] { stage_rows(smem, a.x, a.B, a.d, nullptr, 0.0f); },
        [&](int b, int n, float v, float) { a.logits[(long long)b * a.V + n] = v; });
  }
  // Every read of the position is behind the last barrier.
  if (blockIdx.x == 0)
    for (int i = threadIdx.x; i < a.position_count; i += blockDim.x) a.position[i] += 1;
}

int device_attribute(cudaDeviceAttr attr) {
  int dev = 0, value = 0;
  CUDA_CHECK(cudaGetDevice(&dev));
  CUDA_CHECK(cudaDeviceGetAttribute(&value, attr, dev));
  return value;
}

}  // namespace

struct PersistentPlan {
  Tensor blocks;                              // the BlockPlans, on the device
  Tensor x, h, qkv, att, gate, partial;       // scratch of a step
  StepArgs args{};
  int grid = 0;
  size_t shared = 0;
};

std::string persistent_decode_device_problem() {
  if (!device_attribute(cudaDevAttrCooperativeLaunch)) return "this GPU has no cooperative launches";
  return "";
}

std::shared_ptr<PersistentPlan> persistent_decode_prepare(const PersistentDecodeModel& m) {
  auto plan = std::make_shared<PersistentPlan>();
  StepArgs& a = plan->args;
  const int64_t V = m.embedding.size(0), d = m.embedding.size(1), B = m.logits.size(0), H = m.heads, HD = H * kHead;
  std::vector<BlockPlan> blocks;
  int64_t hidden = 8;
  for (int s = 0; s < 6; s++) {
    a.stage_first[s] = static_cast<int>(blocks.size());
    a.stage_count[s] = static_cast<int>(m.stages[s].size());
    for (const PersistentBlock& blk : m.stages[s]) {
      BlockPlan p{};
      p.qkv = blk.qkv.data<bf16>();
      p.out = blk.out.data<bf16>();
      p.ff12 = blk.ff12.data<bf16>();
      p.ff3 = blk.ff3.data<bf16>();
      p.ff12_bias = blk.ff12_bias.data<float>();
      p.ff3_bias = blk.ff3_bias.data<float>();
      p.norm1 = blk.norm1.data<float>();
      p.norm2 = blk.norm2.data<float>();
      p.norm1_eps = blk.norm1_eps;
      p.norm2_eps = blk.norm2_eps;
      p.full = blk.full ? 1 : 0;
      p.hidden = static_cast<int>(blk.ff12.size(0) / 2);
      hidden = std::max<int64_t>(hidden, p.hidden);
      if (blk.full) {
        p.k_cache = blk.k_cache.data<bf16>();
        p.v_cache = blk.v_cache.data<bf16>();
        p.capacity = static_cast<int>(blk.k_cache.size(1));
      } else {
        p.attn_norm = blk.attn_norm.data<float>();
        p.attn_norm_eps = blk.attn_norm_eps;
        p.state = blk.state.data<float>();
        // exp(-slope) as linear_attention_step's launcher computes it (std::exp on the float slope).
        for (int64_t h = 0; h < H; h++) p.decay[h] = std::exp(-blk.slopes[h]);
      }
      blocks.push_back(p);
    }
  }
  const size_t bytes = blocks.size() * sizeof(BlockPlan);
  plan->blocks = Tensor::empty({static_cast<int64_t>(bytes / sizeof(int32_t)) + 1}, DType::I32, Device::CUDA);
  if (bytes > 0) {
    CUDA_CHECK(cudaMemcpyAsync(plan->blocks.raw_data(), blocks.data(), bytes, cudaMemcpyHostToDevice, cuda_stream()));
    CUDA_CHECK(cudaStreamSynchronize(cuda_stream()));  // `blocks` is freed on return
  }
  a.blocks = reinterpret_cast<const BlockPlan*>(plan->blocks.raw_data());

  // All blocks resident: as many per SM as the occupancy calculator allows (at
  // most kBlocksPerSm), times the SMs. The shared memory: a product phase's
  // staged rows or a softmax-attention unit's, whichever is larger.
  const int64_t widest = std::max({d, HD, hidden});
  plan->shared = static_cast<size_t>(std::max<int64_t>(B * widest, kAttentionShared)) * sizeof(float);
  IFLAME_CHECK(plan->shared <= size_t(kPersistentShared), "persistent decoding step: ", plan->shared,
               " bytes of shared memory per block are more than ", kPersistentShared);
  int per_sm = 0;
  CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, persistent_decode_kernel, kThreads, plan->shared));
  IFLAME_CHECK(per_sm >= 1, "persistent decoding step: not one block of ", kThreads, " threads fits an SM");
  plan->grid = std::min(per_sm, kBlocksPerSm) * device_attribute(cudaDevAttrMultiProcessorCount);

  plan->x = Tensor::zeros({B, d}, DType::F32, Device::CUDA);
  plan->h = Tensor::zeros({B, d}, DType::F32, Device::CUDA);
  plan->qkv = Tensor::zeros({B, 3 * HD}, DType::F32, Device::CUDA);
  plan->att = Tensor::zeros({B, HD}, DType::F32, Device::CUDA);
  plan->gate = Tensor::zeros({B, hidden}, DType::F32, Device::CUDA);
  const int64_t max_splits = std::clamp<int64_t>(plan->grid / (B * H), 1, kMaxSplits);
  plan->partial = Tensor::zeros({B * H * max_splits * kPartial}, DType::F32, Device::CUDA);

  a.B = static_cast<int>(B);
  a.d = static_cast<int>(d);
  a.H = static_cast<int>(H);
  a.HD = static_cast<int>(HD);
  a.V = static_cast<int>(V);
  a.max_splits = static_cast<int>(max_splits);
  a.embedding = m.embedding.data<float>();
  a.norm = m.norm.data<float>();
  a.norm_eps = m.norm_eps;
  a.skip_weights = m.skip_weights.data<float>();
  a.output = m.output.data<bf16>();
  a.output_bias = m.output_bias.data<float>();
  a.position = m.position.data<int32_t>();
  a.position_count = static_cast<int>(m.position.numel());
  a.position_stride = a.position_count == 1 ? 0 : 1;
  a.group0 = m.group0.data<float>();
  a.group1 = m.group1.data<float>();
  a.skip0 = m.skip0.data<float>();
  a.skip1 = m.skip1.data<float>();
  a.out1 = m.out1.data<float>();
  a.out2 = m.out2.data<float>();
  a.logits = m.logits.data<float>();
  a.x = plan->x.data<float>();
  a.h = plan->h.data<float>();
  a.qkv = plan->qkv.data<float>();
  a.att = plan->att.data<float>();
  a.gate = plan->gate.data<float>();
  a.partial = plan->partial.data<float>();
  const std::vector<float> freq = rope_frequencies(kHead);
  for (int j = 0; j < kHalf; j++) a.freq[j] = freq[j];
  // The scale as cached_attention_at gets it from the decoder, times log2(e) as its launcher does.
  a.scale_log2 = (1.0f / std::sqrt(static_cast<float>(kHead))) * kLog2e;
  return plan;
}

void persistent_decode_step(PersistentPlan& plan, const Tensor& tokens, int phase) {
  IFLAME_CHECK(tokens.numel() == plan.args.B, "persistent decoding step: ", plan.args.B, " tokens expected, got ",
               tokens.describe());
  StepArgs args = plan.args;
  args.tokens = tokens.data<int32_t>();
  args.phase = phase;
  void* params[] = {&args};
  CUDA_CHECK(cudaLaunchCooperativeKernel(reinterpret_cast<const void*>(persistent_decode_kernel), dim3(plan.grid),
                                         dim3(kThreads), params, plan.shared, cuda_stream()));
}

int persistent_decode_blocks(const PersistentPlan& plan) { return plan.grid; }

}  // namespace iflame::ops::cuda
