// sample_step.h: one sampling step over B rows, on the logits' device (the op
// behind infer/device_sampler.h, which holds the rows between steps).
//
// For every row b that draws at its own position (row_draws_at, sampling_core.h):
// the token sample_token() would draw from logits[b] (temperature, top-k, top-p,
// the Philox draw of (seed, position + 1, sample id), PAD and START banned, and
// with `constrained` only what constraint_mask() allows, top-k and top-p applied
// before or after the mask as cfg.filter_on says), appended to the row's
// history; a row that finishes with it records its SampleEnd and decrements
// `active`. Every row, drawing or not, then writes the token it feeds next.
// With queue.refill (continuous batching) a done row at a face boundary takes the
// next sample (index from `next`), flags itself in `restarts` and feeds that
// sample's first token. Last, when queue.live is given, every row writes whether
// it is live (row_is_live: its sample, a refilled one included, is still fed) for
// the decoder's next step, in the same launch.
//
// Both implementations run the per-row code of ops/sampling_core.h:
//   cpu::   the rows one after the other (ops/cpu/sample_step.cpp);
//   cuda::  one block per row, one thread per token, no host sync, the same
//           launch arguments every step, so a CUDA graph can replay it
//           (ops/cuda/sample_step.cu).
// The CPU gives exactly infer/sampler.cpp's tokens; the GPU the same up to exp()
// rounding (sampling_core.h says when that can matter).
#pragma once
#include <cstdint>
#include <vector>

#include "core/tensor.h"
#include "ops/sampling_core.h"

namespace iflame::ops {

// The samples the rows work through. Pointers are on the logits' device. The
// step always records how a finished sample ended; refill (continuous batching)
// also hands a done row the next sample.
struct SampleQueue {
  bool refill = false;
  SampleRow fresh{};              // a row right after the prompt
  uint64_t first_sample_id = 0;   // history row i holds sample first_sample_id + i
  int64_t samples = 0;            // samples in all
  int32_t* next = nullptr;        // i32 [1]: the next sample a row takes
  SampleEnd* ends = nullptr;      // [samples]: how each finished sample ended
  int32_t* restarts = nullptr;    // i32 [B]: 1 where a row started a sample this step
  int32_t* live = nullptr;        // i32 [B] or null: row_is_live() of each row after the step
};

// The largest vocabulary the CUDA step takes: a block keeps each token's logit,
// weight, rank slot and two flags in shared memory (18 bytes a token, 36 KiB at most).
constexpr int kMaxSampleStepVocab = 2048;

// logits f32 [B, V] contiguous; history i32 [samples, capacity + 1]; rows i32
// [B, sizeof(SampleRow) / 4] (SampleRow words); feed i32 [B]; active i32 [1];
// all on one device. Checks shapes, dtypes and devices, then dispatches.
void sample_step(const Tensor& logits, Tensor& history, Tensor& rows, Tensor& feed, Tensor& active,
                 const SamplingConfig& cfg, bool constrained, int64_t capacity, const SampleQueue& queue);

namespace cpu {
void sample_step(const Tensor& logits, Tensor& history, Tensor& rows, Tensor& feed, Tensor& active,
                 const SamplingConfig& cfg, bool constrained, int64_t capacity, const SampleQueue& queue);
// One row's draw: the token sample_token() draws from logits[0 .. vocab) with
// draw u, banning everything outside the allowed set (PAD and START when
// `constraint` is null, else what constraint_mask(*constraint) allows); with a
// constraint and FilterOn::Raw, raw_filter_draw()'s token (ops/sampling_core.h).
// candidates / weights are scratch space.
int32_t sample_row(const float* logits, int vocab, const SamplingConfig& cfg, float u,
                   const ConstraintState* constraint, std::vector<int32_t>& candidates,
                   std::vector<double>& weights);
}  // namespace cpu

namespace cuda {
void sample_step(const Tensor& logits, Tensor& history, Tensor& rows, Tensor& feed, Tensor& active,
                 const SamplingConfig& cfg, bool constrained, int64_t capacity, const SampleQueue& queue);
}  // namespace cuda

}  // namespace iflame::ops
