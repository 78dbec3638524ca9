// sampler.cpp: temperature, top-k and top-p sampling on the host, the reference
// of ops/sampling_core.h (see sampler.h).
#include "infer/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"
#include "nn/config.h"

namespace iflame::infer {

int32_t sample_token(const float* logits, int vocab, const SamplingConfig& cfg, float u,
                     const std::vector<int32_t>& banned) {
  std::vector<int32_t> cand;
  cand.reserve(vocab);
  for (int32_t t = 0; t < vocab; t++)
    if (std::find(banned.begin(), banned.end(), t) == banned.end()) cand.push_back(t);
  if (cand.empty())
    for (int32_t t = 0; t < vocab; t++) cand.push_back(t);
  // Most likely first; ties go to the lower token.
  std::stable_sort(cand.begin(), cand.end(), [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
  if (cfg.temperature <= 0.0f || cfg.top_k == 1) return cand[0];
  size_t keep = cand.size();
  if (cfg.top_k > 0) keep = std::min(keep, static_cast<size_t>(cfg.top_k));
  // Softmax of logits / temperature over the kept tokens, in double.
  std::vector<double> prob(keep);
  const double top = double(logits[cand[0]]) / cfg.temperature;
  double total = 0;
  for (size_t i = 0; i < keep; i++) {
    prob[i] = std::exp(double(logits[cand[i]]) / cfg.temperature - top);
    total += prob[i];
  }
  // Nucleus: token i stays while the probability before it is below top_p.
  if (cfg.top_p < 1.0f) {
    double before = 0;
    size_t n = 0;
    while (n < keep && before < double(cfg.top_p) * total) before += prob[n++];
    keep = std::max<size_t>(n, 1);
    total = 0;
    for (size_t i = 0; i < keep; i++) total += prob[i];
  }
  double target = double(u) * total, acc = 0;
  for (size_t i = 0; i < keep; i++) {
    acc += prob[i];
    if (target < acc) return cand[i];
  }
  return cand[keep - 1];
}

std::vector<int32_t> sample_tokens(const std::vector<float>& logits, int vocab, const SamplingConfig& cfg,
                                   uint64_t position, const std::vector<uint64_t>& sample_ids,
                                   const std::vector<bool>& active) {
  const size_t B = active.size();
  IFLAME_CHECK(logits.size() == B * static_cast<size_t>(vocab) && sample_ids.size() == B,
               "sample_tokens: ", logits.size(), " logits for ", B, " rows of ", vocab);
  static const std::vector<int32_t> banned = {kPadToken, kStartToken};
  std::vector<int32_t> out(B, -1);
  for (size_t b = 0; b < B; b++) {
    if (!active[b]) continue;
    const float u = sampling_uniform(cfg.seed, position, sample_ids[b]);
    out[b] = sample_token(logits.data() + b * vocab, vocab, cfg, u, banned);
  }
  return out;
}

}  // namespace iflame::infer
