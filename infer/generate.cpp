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
// cache at every step.
#include "infer/generate.h"

#include <algorithm>
#include <chrono>

#include "core/device.h"
#include "core/error.h"

namespace iflame::infer {

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
  // Continuous batching: a row the sampler hands a new sample starts over at the next step.
  if (samples > rows) st.row_resets = sampler.restarts();
  // Rows whose sample is done (or idle) skip the cached attention: nothing reads their steps (infer/decode.h).
  st.row_live = sampler.live();
  // A sample holds a row for at most capacity steps plus up to 8 of waiting for
  // a face boundary; rows take samples as they free up, so all are done within
  // (samples / rows + 1) such spans; the GPU may learn of the end a few polls late.
  const int64_t step_limit =
      (samples / rows + 1) * (capacity + kTokensPerFace) + 4 * DeviceSampler::kPollEvery;
  // On the GPU each step (decode + draws) is replayed from a CUDA graph: one
  // launch instead of a few hundred (infer/decode.h's DecodeGraphs).
  const bool graphs = cfg.cuda_graphs && model.device() == Device::CUDA;
  DecodeGraphs step_graphs;
  for (int64_t pos = 0;; pos++) {
    IFLAME_CHECK(pos < step_limit, "generate: ", samples, " samples did not finish in ", step_limit, " steps");
    if (graphs) {
      step_graphs.step(st, sampler.feed(), [&] { sampler.queue_draws(st.logits); });
      sampler.count_step(pos);
    } else {
      sampler.step(step(st, sampler.feed()), pos);
    }
    if (sampler.finished()) break;
  }
  std::vector<GeneratedSequence> seqs = sampler.results();
  if (stats) {
    stats->steps = st.pos;
    stats->sampled_tokens = sampler.sampled_tokens();
    stats->cache_bytes = st.cache_bytes();
    stats->decode_step = st.step_path();
    stats->seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  return seqs;
}

}  // namespace iflame::infer
