// cuda/sample_step.cu: the sampling step on the GPU (see ops/sample_step.h).
//
// One block per row, one thread per token up to 256 (160 threads for the 132
// tokens). Every step:
//   0. every thread reads the row's position and whether it draws there; a
//      barrier, so that thread 0 may then write the row. Rows that do not draw
//      (done, or still inside the prompt) only write their next feed token and
//      count the step. A drawing row goes on:
//   1. each thread loads logits of tokens t = tid, tid + blockDim, ... into shared
//      memory and tests them against the row's rules (plain: not PAD or START;
//      constrained: constraint_allows() on the row's ConstraintMask, computed by
//      every thread from the O(1) state); a shared counter sums the candidates
//      (none: every token is one, as sample_token() does). With FilterOn::Raw
//      (filters_raw) the candidates are the plain ones and the allowed tokens
//      are flagged apart, counted by a second counter (none: every token);
//   2. each candidate counts the candidates ordered before it (candidate_rank):
//      its place in the order sample_token()'s sort gives, and the kept ones
//      (rank < keep) write themselves into sorted[rank]. O(V) a thread, V = 132;
//   3. kept candidates compute their weights in parallel (candidate_weight, double);
//   4. thread 0 runs nucleus_pick() over them, one by one in candidate order
//      (the sums must associate as on the host to give the same bits), or
//      raw_filter_draw() with the allowed flags for FilterOn::Raw, then
//      accept_draw() and finish_step() update the row and its history, and an
//      atomic decrement of the counter marks a finished row.
// With continuous batching thread 0 then hands a done row its next sample at a
// face boundary (row_can_refill / refill_row; the sample index from an atomic
// counter, so which row takes which sample may vary, never a sample's tokens)
// and flags it in `restarts` for the decoder; every row then writes its
// liveness (row_is_live) to `live`, which the decoder's next step reads.
// Everything but the launch geometry is ops/sampling_core.h, shared with the CPU.
// No argument changes from step to step (each row keeps its own position), so a
// CUDA graph can capture the launch once and replay it.
#include <algorithm>

#include "core/cuda_check.h"
#include "ops/sample_step.h"

namespace iflame::ops {

namespace {

constexpr int kMaxThreads = 256;

// FilterOn::Raw's allowed tokens, as flagged in shared memory.
struct FlagAllows {
  const unsigned char* flag;
  __device__ bool operator()(int32_t t) const { return flag[t] != 0; }
};

__global__ void __launch_bounds__(kMaxThreads)
    sample_step_kernel(const float* __restrict__ logits, int vocab, int32_t* __restrict__ history,
                       int64_t history_stride, SampleRow* __restrict__ rows, int32_t* __restrict__ feed,
                       int32_t* __restrict__ active, SamplingConfig cfg, int constrained, int64_t capacity,
                       SampleQueue queue) {
  // Shared: weight double[vocab], logit float[vocab], sorted int32[vocab],
  // candidate uint8[vocab], allowed uint8[vocab] (FilterOn::Raw's allowed tokens).
  extern __shared__ double shared_weight[];
  float* shared_logit = reinterpret_cast<float*>(shared_weight + vocab);
  int32_t* sorted = reinterpret_cast<int32_t*>(shared_logit + vocab);
  unsigned char* candidate = reinterpret_cast<unsigned char*>(sorted + vocab);
  unsigned char* allowed = candidate + vocab;
  __shared__ int candidates, allowed_count;

  const int b = blockIdx.x, tid = threadIdx.x, threads = blockDim.x;
  SampleRow* row = rows + b;
  int32_t* hist = history + int64_t(row->sample_id - queue.first_sample_id) * history_stride;
  // The end of the row's step (thread 0): its next feed, and with continuous
  // batching the next sample when it is done at a face boundary.
  // Last, whether the row is live at the next step (refilled rows are).
  auto finish = [&] {
    feed[b] = finish_step(*row, hist);
    if (queue.refill) {
      queue.restarts[b] = row_can_refill(*row);
      if (queue.restarts[b]) {
        refill_row(*row, queue.fresh, atomicAdd(queue.next, 1), queue.samples, queue.first_sample_id);
        feed[b] = history[int64_t(row->sample_id - queue.first_sample_id) * history_stride];
      }
    }
    if (queue.live) queue.live[b] = row_is_live(*row);
  };
  const int64_t position = row->position;
  const bool draws = row_draws_at(*row, position);
  if (tid == 0) candidates = allowed_count = 0;
  __syncthreads();  // every thread has read the row (the same answer for all) before thread 0 writes it
  if (!draws) {
    if (tid == 0) finish();
    return;
  }

  ConstraintMask mask;
  if (constrained) mask = constraint_mask(row->constraint);
  const bool raw = filters_raw(cfg, constrained);
  const float* row_logits = logits + int64_t(b) * vocab;
  int mine = 0, mine_allowed = 0;
  for (int t = tid; t < vocab; t += threads) {
    shared_logit[t] = row_logits[t];
    const bool ok = constrained && !raw ? constraint_allows(mask, t) : plain_allows(t);
    candidate[t] = ok;
    mine += ok;
    if (raw) {
      allowed[t] = constraint_allows(mask, t);
      mine_allowed += allowed[t];
    }
  }
  if (mine) atomicAdd(&candidates, mine);
  if (mine_allowed) atomicAdd(&allowed_count, mine_allowed);
  __syncthreads();
  int n = candidates;
  const bool no_candidate = n == 0, none_allowed = raw && allowed_count == 0;
  if (no_candidate || none_allowed) {  // nothing allowed: every token is a candidate (or allowed)
    for (int t = tid; t < vocab; t += threads) {
      if (no_candidate) candidate[t] = 1;
      if (none_allowed) allowed[t] = 1;
    }
    if (no_candidate) n = vocab;
    __syncthreads();
  }

  const bool greedy = sampling_is_greedy(cfg);
  const int keep = greedy ? 1 : sampling_keep(cfg, n);
  for (int t = tid; t < vocab; t += threads) {
    if (!candidate[t]) continue;
    const int rank = candidate_rank(shared_logit, candidate, vocab, t, keep);
    if (rank < keep) sorted[rank] = t;
  }
  __syncthreads();
  if (!greedy) {
    const float top = shared_logit[sorted[0]];
    for (int i = tid; i < keep; i += threads)
      shared_weight[i] = candidate_weight(shared_logit[sorted[i]], top, cfg.temperature);
    __syncthreads();
  }
  if (tid == 0) {
    const float u = sampling_uniform(cfg.seed, position + 1, row->sample_id);
    const int32_t token = greedy ? sorted[0]
                          : raw  ? raw_filter_draw(shared_logit, vocab, sorted, shared_weight, keep, cfg.top_p, u,
                                                   FlagAllows{allowed})
                                 : sorted[nucleus_pick(shared_weight, keep, cfg.top_p, u)];
    if (accept_draw(*row, hist, token, position, capacity)) {  // the row in place
      queue.ends[row->sample_id - queue.first_sample_id] = SampleEnd{row->length, row->ended};
      atomicSub(active, 1);
    }
    finish();
  }
}

}  // namespace

namespace cuda {

void sample_step(const Tensor& logits, Tensor& history, Tensor& rows, Tensor& feed, Tensor& active,
                 const SamplingConfig& cfg, bool constrained, int64_t capacity, const SampleQueue& queue) {
  const int B = static_cast<int>(feed.numel());
  const int vocab = static_cast<int>(logits.size(1));
  const size_t shared = size_t(vocab) * (sizeof(double) + sizeof(float) + sizeof(int32_t) + 2);
  const int threads = std::min(kMaxThreads, (vocab + 31) / 32 * 32);
  sample_step_kernel<<<B, threads, shared, cuda_stream()>>>(
      logits.data<float>(), vocab, history.data<int32_t>(), history.size(1),
      reinterpret_cast<SampleRow*>(rows.data<int32_t>()), feed.data<int32_t>(), active.data<int32_t>(), cfg,
      constrained ? 1 : 0, capacity, queue);
  CUDA_CHECK_LAUNCH();
}

}  // namespace cuda

}  // namespace iflame::ops
