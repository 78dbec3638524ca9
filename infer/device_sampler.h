// device_sampler.h: the sampling side of the decoding loop, kept on the model's
// device (CPU or CUDA) so that a step never waits for the host.
//
// A DeviceSampler holds, for B rows sampled in lockstep:
//   history  i32 [B, capacity + 1]  the prompt, then the accepted draws;
//   history  i32 [samples, capacity + 1] with continuous batching (below);
//   rows     SampleRow [B]           length, done / ended flags, draws, sample id and
//                                    the O(1) constraint state (ops/sampling_core.h);
//   feed     i32 [B]                 the token each row feeds at the next position;
//   active   i32 [1]                 how many rows (samples) are not done;
//   next     i32 [1]                 the next sample a done row takes (>= samples:
//                                    none left to hand out);
//   live     i32 [B]                 which rows' samples are still fed at the next
//                                    step (the decoder skips the others' attention).
// step(logits, position) takes the logits of the step that fed `position` (they
// predict token position + 1; each row counts positions itself, the host
// checks its count) and, for every row that draws there, draws with
// the sampling op ops/sample_step.h (temperature, top-k, top-p, the Philox draw
// of (seed, position + 1, sample id), PAD and START banned; with `constrained`,
// only the tokens allowed_next_tokens() of infer/constrain.h allows), appends the
// token, and writes the next feed. Rows still inside the prompt feed its next
// token; done rows keep feeding their last one. On the GPU that is one kernel
// launch (a block per row) with no host sync and no allocation; on the CPU the same
// core runs in a loop. The tokens equal those of the host loop generate.cpp ran
// before (sample_tokens / sample_token + constrained_banned_tokens) exactly on the
// CPU; on the GPU up to exp() rounding (ops/sampling_core.h says when that matters).
//
// Continuous batching (samples > batch): the B rows hold samples 0 .. samples-1
// in turn. A row whose sample is done takes the next one at its next face
// boundary (row_can_refill, ops/sampling_core.h), starting over at position 0:
// restarts() flags it for that step, so the decoder zeroes its rows
// (DecodeState::row_resets, infer/decode.h); with none left it goes idle. The
// histories are kept per sample ([samples, capacity + 1]), draws are named by
// (seed, position in the sample, sample id), so a sample's tokens do not depend
// on B or on which row held it, and the counter below counts unfinished samples.
//
// Face limit (as generate.cpp always did): positions 0 .. capacity - 1 can be fed;
// the draw at position capacity - 1 is kept only if it is END, and the row is done.
//
// "Are all rows done?" without a sync per step: finished() is called after every
// step. On the CPU it reads the counter. On the GPU, every kPollEvery steps it
// queues an async copy of the counter into pinned memory and waits for the copy
// queued kPollEvery steps earlier (by then long done unless the host is that far
// ahead of the GPU, which this also bounds): so the loop learns that every row is
// done at most 2 * kPollEvery steps late. Steps after that change nothing (done
// rows only re-feed their last token), so the results do not depend on it. The
// same poll reads `next` with it, so the loop also learns, as late, when no
// sample is left to hand out and how many rows still work (drain_rows()).
//
// The drain (infer/generate.h): keep_rows() keeps only the chosen rows (their
// SampleRow, feed, restart and live entries, copied on the device), so the
// decoder can go on at a smaller batch. Histories, ends and the counters are
// per sample and stay as they are; the draws of the rows let go still count in
// sampled_tokens().
#pragma once
#include <cstdint>
#include <vector>

#include "core/tensor.h"
#include "infer/sampler.h"
#include "ops/sample_step.h"

namespace iflame {
class CounterPoll;  // core/counter_poll.h (CUDA builds)
}

namespace iflame::infer {

// A row's state and a finished sample's end, as the sampling op keeps them.
using ops::SampleEnd;
using ops::SampleRow;

// One generated sequence: the prompt, the sampled tokens, and END when the
// model ended it (a sequence that hit the face limit has no END).
struct GeneratedSequence {
  std::vector<int32_t> tokens;
  bool ended = false;
};

class DeviceSampler {
 public:
  static constexpr int kPollEvery = 8;  // GPU: steps between two reads of the active counter

  // batch rows, all starting from `prompt` (the START row, then optionally whole
  // or partial faces; at most capacity tokens); sample i draws as sample
  // first_sample_id + i, row b starting with sample b. samples: how many samples
  // in all (0: batch; more than batch: continuous batching, above). vocab >= 132
  // (tokens past 131 are never drawn when constrained).
  DeviceSampler(Device device, int batch, const std::vector<int32_t>& prompt, int64_t capacity, int vocab,
                const SamplingConfig& cfg, bool constrained, uint64_t first_sample_id, int64_t samples = 0);
  ~DeviceSampler();
  DeviceSampler(const DeviceSampler&) = delete;
  DeviceSampler& operator=(const DeviceSampler&) = delete;

  // i32 [B] on the device: the tokens to feed at the next position (position 0:
  // the prompt's first token).
  const Tensor& feed() const { return feed_; }

  // i32 [B] on the device: 1 for the rows that start a new sample at the next
  // step (continuous batching only; zeros otherwise).
  const Tensor& restarts() const { return restarts_; }

  // i32 [B] on the device: 1 for the rows whose sample is still fed at the next
  // step (in its prompt or drawing, a sample just taken included), 0 for done
  // and idle rows (ops::row_is_live). Written by every step in its own launch;
  // before the first, the rows holding a sample are live. The decoder skips the
  // cached attention of the others (DecodeState::row_live, infer/decode.h).
  const Tensor& live() const { return live_; }

  // Consumes f32 [B, vocab] contiguous logits on the device, from the step that
  // fed `position`; positions (the batch's steps) come in order 0, 1, ...,
  // capacity - 1 (without continuous batching: no further).
  // step() = queue_draws(logits) + count_step(position), checked before either.
  void step(const Tensor& logits, int64_t position);

  // The two halves of step(), for a CUDA graph that captures the device work
  // once (queue_draws: no host sync, no allocation, the same launch arguments at
  // every step: each row keeps its own position) and replays it; the host then
  // calls count_step() for every replayed step, so finished() keeps count.
  void queue_draws(const Tensor& logits);
  void count_step(int64_t position);

  // Whether every row is done; on the GPU it may say so a few steps late (above).
  bool finished();

  // Once no sample is left to hand out: how many samples are still unfinished,
  // which is then how many rows are live; -1 while samples wait (or, on the GPU,
  // before the first poll has come back). Exact on the CPU; on the GPU as of
  // finished()'s last poll, up to 2 * kPollEvery steps old (never below the
  // live rows: both counters only move one way).
  int drain_rows() const;

  // The rows flagged live now (live(), read on the host: waits for the queued work).
  std::vector<int> live_rows() const;

  // Keeps rows keep[0], keep[1], ... as rows 0, 1, ... of a batch of keep.size()
  // (distinct rows, at least one); the rest are let go. Meant for rows that are
  // done or idle: a live row let go never finishes its sample. feed(),
  // restarts() and live() are new tensors afterwards.
  void keep_rows(const std::vector<int>& keep);

  // Exact answers; on the GPU they wait for the queued work.
  int active_rows() const;
  std::vector<GeneratedSequence> results() const;  // one per sample, in sample order
  std::vector<SampleRow> rows() const;
  int64_t sampled_tokens() const;  // draws over all rows (END and draws dropped at the face limit included)

  int batch() const { return batch_; }
  int64_t samples() const { return samples_; }
  int64_t capacity() const { return capacity_; }
  int64_t next_position() const { return next_position_; }

 private:
  void check_position(int64_t position) const;

  Device device_;
  int batch_, vocab_;
  int64_t capacity_, samples_;
  SamplingConfig cfg_;
  bool constrained_, refill_;
  uint64_t first_sample_id_;
  SampleRow fresh_;  // a row right after the prompt
  Tensor history_, rows_, feed_;
  Tensor counters_;  // i32 [2]: active, next (polled together on the GPU)
  Tensor active_;    // i32 [1], counters_[0]: samples not done
  Tensor ends_;      // i32 [samples, 2]: SampleEnd of each finished sample
  Tensor next_;      // i32 [1], counters_[1]: the next sample a row takes
  Tensor restarts_;  // i32 [B]
  Tensor live_;      // i32 [B]
  ops::SampleQueue queue_;  // the above as the sampling op takes them (pointers into these tensors)
  int64_t next_position_ = 0;
  bool finished_ = false;
  int32_t polled_[2] = {-1, -1};  // GPU: active and next as the last poll read them
  int64_t dropped_draws_ = 0;     // draws of the rows keep_rows() let go
  CounterPoll* poll_ = nullptr;  // GPU: how finished() reads the counter
};

}  // namespace iflame::infer
