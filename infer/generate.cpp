// generate.cpp: the sampling loop (see generate.h).
//
// Every step feeds one token per row to the cached decoder and hands the logits,
// on the device, to the DeviceSampler (infer/device_sampler.h), which draws the
// next tokens there (plain or, with cfg.constrained, under infer/constrain.h's
// rules), keeps each row's history, and writes the tokens to feed next: while
// the prompt lasts it feeds the prompt, done rows keep feeding their last token
// so the batch stays in lockstep. Nothing comes back to the host per step; the
// loop asks finished() (a pinned-memory poll every few steps on the GPU) and
// stops once every row has sampled END or reached the face limit. On the GPU
// the decoding step and the draws are captured as CUDA graphs (one per phase of
// the position) and replayed, unless cfg.cuda_graphs is off. With more samples
// than rows, the sampler hands done rows the next sample at a face boundary and
// flags them (DeviceSampler::restarts), and the decoder zeroes those rows at the
// start of the next step (DecodeState::row_resets): all of it on the device,
// inside the same graphs. Rows that are done or idle are flagged dead by the
// sampler (DeviceSampler::live) and skip the attention over their K/V caches
// (DecodeState::row_live), so a run's drain does not read every finished row's
// cache at every step; and once at most half the rows are live with no sample
// left to hand out, the loop goes on with those rows only (generate.h).
#include "infer/generate.h"

#include <algorithm>
#include <chrono>
#include <memory>

#include "core/device.h"
#include "core/error.h"

namespace iflame::infer {

namespace {

// Whether the drain should move to fewer rows: no sample is left to hand out
// (so no dead row will be needed again) and at most half of the `batch` rows
// are live, so a step at the smaller batch saves at least half the row work.
// drain_rows: DeviceSampler::drain_rows(), -1 while samples wait.
bool should_compact(int drain_rows, int64_t batch) { return drain_rows >= 1 && drain_rows <= batch / 2; }

// Points the decoder's row flags at the sampler's (after begin() or a compaction).
void link_row_flags(DecodeState& st, const DeviceSampler& sampler, bool refill) {
  // Continuous batching: a row the sampler hands a new sample starts over at the next step.
  if (refill) st.row_resets = sampler.restarts();
  // Rows whose sample is done (or idle) skip the cached attention: nothing reads their steps (infer/decode.h).
  st.row_live = sampler.live();
}

// Moves the decoder and the sampler to their live rows only, with fresh graphs
// (the old ones replay on the old buffers). Returns false when no row is live
// any more (the GPU's poll was late: finished() will say so shortly).
bool keep_live_rows(DecodeState& st, DeviceSampler& sampler, std::unique_ptr<DecodeGraphs>& graphs, bool refill) {
  const std::vector<int> keep = sampler.live_rows();  // one sync: exact, maybe fewer than the poll said
  if (keep.empty()) return false;
  graphs.reset();  // before the buffers its graphs use go
  st = compact_rows(st, keep);
  sampler.keep_rows(keep);
  link_row_flags(st, sampler, refill);
  graphs = std::make_unique<DecodeGraphs>();
  return true;
}

}  // namespace

std::vector<GeneratedSequence> generate(const ModelWeights& model, int batch, const std::vector<int32_t>& prompt,
                                        const GenerateConfig& cfg, uint64_t first_sample_id,
                                        GenerateStats* stats) {
  return generate_samples(model, batch, batch, prompt, cfg, first_sample_id, stats);
}

std::vector<GeneratedSequence> generate_samples(const ModelWeights& model, int64_t samples, int batch,
                                                const std::vector<int32_t>& prompt_in, const GenerateConfig& cfg,
                                                uint64_t first_sample_id, GenerateStats* stats) {
  auto t0 = std::chrono::steady_clock::now();
  IFLAME_CHECK(batch >= 1, "generate: batch must be >= 1, got ", batch);
  IFLAME_CHECK(samples >= 1, "generate: samples must be >= 1, got ", samples);
  IFLAME_CHECK(cfg.max_faces >= 1, "generate: max_faces must be >= 1, got ", cfg.max_faces);
  std::vector<int32_t> prompt = prompt_in;
  if (prompt.empty()) prompt.assign(kTokensPerFace, kStartToken);
  for (int t = 0; t < kTokensPerFace; t++)
    IFLAME_CHECK(t < static_cast<int>(prompt.size()) && prompt[t] == kStartToken,
                 "generate: the prompt must begin with the START row");
  for (int32_t t : prompt)
    IFLAME_CHECK(t >= 0 && t < model.config().vocab, "generate: prompt token ", t, " outside the vocabulary");
  // Positions 0 .. capacity-1 can be fed; the step at capacity-1 predicts token
  // `capacity`, which is kept only if it is END.
  const int64_t capacity = int64_t(kTokensPerFace) * (cfg.max_faces + 1);
  IFLAME_CHECK(static_cast<int64_t>(prompt.size()) <= capacity, "generate: the prompt has ",
               (prompt.size() - kTokensPerFace) / kTokensPerFace, " faces, more than --max-faces ",
               cfg.max_faces);

  const int rows = static_cast<int>(std::min<int64_t>(batch, samples));
  DeviceSampler sampler(model.device(), rows, prompt, capacity, model.config().vocab, cfg.sampling,
                        cfg.constrained, first_sample_id, samples);
  DecodeState st = begin(model, rows, capacity, cfg.ctx, cfg.decode_step);
  link_row_flags(st, sampler, samples > rows);
  GenerateStats run;
  run.first_rows = rows;
  run.cache_bytes = st.cache_bytes();
  run.decode_step = st.step_path();
  // A sample holds a row for at most capacity steps plus up to 8 of waiting for
  // a face boundary; rows take samples as they free up, so all are done within
  // (samples / rows + 1) such spans; the GPU may learn of the end a few polls late.
  const int64_t step_limit =
      (samples / rows + 1) * (capacity + kTokensPerFace) + 4 * DeviceSampler::kPollEvery;
  // On the GPU each step (decode + draws) is replayed from a CUDA graph: one
  // launch instead of a few hundred (infer/decode.h's DecodeGraphs).
  const bool graphs = cfg.cuda_graphs && model.device() == Device::CUDA;
  // Graphs are tied to a state's buffers: a compaction starts a fresh set.
  auto step_graphs = std::make_unique<DecodeGraphs>();
  for (int64_t pos = 0;; pos++) {
    IFLAME_CHECK(pos < step_limit, "generate: ", samples, " samples did not finish in ", step_limit, " steps");
    if (graphs) {
      step_graphs->step(st, sampler.feed(), [&] { sampler.queue_draws(st.logits); });
      sampler.count_step(pos);
    } else {
      sampler.step(step(st, sampler.feed()), pos);
    }
    run.row_steps += st.batch;
    if (sampler.finished()) break;
    if (cfg.compact_drain && should_compact(sampler.drain_rows(), st.batch))
      run.compactions += keep_live_rows(st, sampler, step_graphs, samples > rows);
  }
  std::vector<GeneratedSequence> seqs = sampler.results();
  if (stats) {
    run.steps = st.pos;
    run.sampled_tokens = sampler.sampled_tokens();
    run.last_rows = static_cast<int>(st.batch);
    run.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    *stats = run;
  }
  return seqs;
}

}  // namespace iflame::infer
