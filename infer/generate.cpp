// generate.cpp: the sampling loop (see generate.h).
//
// Every step feeds one token per row to the cached decoder; while the prompt
// lasts the logits are not looked at. Afterwards the logits come to the host
// (the one host sync per step) and the sampler picks the next tokens. Rows that
// are done keep being fed (their last token) so the batch stays in lockstep;
// their outputs are ignored. The loop ends when every row is done. With
// cfg.constrained, each row's draw skips the tokens infer/constrain.h masks.
#include "infer/generate.h"

#include <chrono>

#include "core/device.h"
#include "core/error.h"
#include "infer/constrain.h"

namespace iflame::infer {

std::vector<GeneratedSequence> generate(const IFlame& model, int batch, const std::vector<int32_t>& prompt_in,
                                        const GenerateConfig& cfg, uint64_t first_sample_id,
                                        GenerateStats* stats) {
  auto t0 = std::chrono::steady_clock::now();
  IFLAME_CHECK(batch >= 1, "generate: batch must be >= 1, got ", batch);
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

  const int vocab = model.config().vocab;
  std::vector<GeneratedSequence> seqs(batch);
  for (auto& s : seqs) s.tokens = prompt;
  std::vector<bool> active(batch, true);
  std::vector<uint64_t> ids(batch);
  for (int b = 0; b < batch; b++) ids[b] = first_sample_id + b;
  int remaining = batch;

  DecodeState st = begin(model, batch, capacity, cfg.ctx);
  Tensor feed = Tensor::empty({batch}, DType::I32, Device::CPU);
  int64_t sampled = 0;
  for (int64_t pos = 0; remaining > 0; pos++) {
    int32_t* f = feed.data<int32_t>();
    for (int b = 0; b < batch; b++) f[b] = seqs[b].tokens[std::min<size_t>(pos, seqs[b].tokens.size() - 1)];
    Tensor logits = step(st, feed);
    if (pos + 1 < static_cast<int64_t>(prompt.size())) continue;  // still reading the prompt
    std::vector<float> host = logits.to_floats();
    std::vector<int32_t> next;
    if (cfg.constrained) {
      // Same draw per (seed, position, sample) as sample_tokens, over the allowed tokens only.
      next.assign(batch, -1);
      for (int b = 0; b < batch; b++)
        if (active[b])
          next[b] = sample_token(host.data() + size_t(b) * vocab, vocab, cfg.sampling,
                                 sampling_uniform(cfg.sampling.seed, pos + 1, ids[b]),
                                 constrained_banned_tokens(seqs[b].tokens, vocab));
    } else {
      next = sample_tokens(host, vocab, cfg.sampling, pos + 1, ids, active);
    }
    for (int b = 0; b < batch; b++) {
      if (!active[b]) continue;
      sampled++;
      const bool at_limit = pos + 1 == capacity;
      if (next[b] == kEndToken) {
        seqs[b].tokens.push_back(kEndToken);
        seqs[b].ended = true;
      } else if (!at_limit) {
        seqs[b].tokens.push_back(next[b]);
        continue;
      }
      active[b] = false;
      remaining--;
    }
  }
  if (stats) {
    stats->steps = st.pos;
    stats->sampled_tokens = sampled;
    stats->cache_bytes = st.cache_bytes();
    stats->seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  return seqs;
}

}  // namespace iflame::infer
