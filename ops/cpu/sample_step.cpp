// cpu/sample_step.cpp: the sampling step as plain loops, the rows one after
// the other, each through the per-row code of ops/sampling_core.h (see
// ops/sample_step.h). This is the reference the CUDA step is tested against.
#include <algorithm>

#include "ops/sample_step.h"

namespace iflame::ops::cpu {

namespace {

// The allowed tokens of FilterOn::Raw's draw: what the mask allows, or every
// token when it allows none (as the candidates of FilterOn::Allowed; never under
// constraint_mask's rules).
struct MaskAllows {
  ConstraintMask mask;
  bool every;
  bool operator()(int32_t t) const { return every || constraint_allows(mask, t); }
};

MaskAllows mask_allows(const ConstraintState& constraint, int vocab) {
  MaskAllows a{constraint_mask(constraint), true};
  for (int32_t t = 0; t < vocab && a.every; t++) a.every = !constraint_allows(a.mask, t);
  return a;
}

}  // namespace

int32_t sample_row(const float* logits, int vocab, const SamplingConfig& cfg, float u,
                   const ConstraintState* constraint, std::vector<int32_t>& candidates,
                   std::vector<double>& weights) {
  candidates.clear();
  const bool raw = filters_raw(cfg, constraint != nullptr);
  if (constraint && !raw) {
    const ConstraintMask mask = constraint_mask(*constraint);
    for (int32_t t = 0; t < vocab; t++)
      if (constraint_allows(mask, t)) candidates.push_back(t);
  } else {
    for (int32_t t = 0; t < vocab; t++)
      if (plain_allows(t)) candidates.push_back(t);
  }
  if (candidates.empty())
    for (int32_t t = 0; t < vocab; t++) candidates.push_back(t);
  const int n = static_cast<int>(candidates.size());
  const int keep = sampling_is_greedy(cfg) ? 1 : sampling_keep(cfg, n);
  // candidate_before is a total order, so the first `keep` are those a full sort puts there.
  std::partial_sort(candidates.begin(), candidates.begin() + keep, candidates.end(), [&](int32_t a, int32_t b) {
    return candidate_before(logits[a], a, logits[b], b);
  });
  if (sampling_is_greedy(cfg)) return candidates[0];
  weights.resize(keep);
  const float top = logits[candidates[0]];
  for (int i = 0; i < keep; i++) weights[i] = candidate_weight(logits[candidates[i]], top, cfg.temperature);
  if (raw)
    return raw_filter_draw(logits, vocab, candidates.data(), weights.data(), keep, cfg.top_p, u,
                           mask_allows(*constraint, vocab));
  return candidates[nucleus_pick(weights.data(), keep, cfg.top_p, u)];
}

void sample_step(const Tensor& logits, Tensor& history_t, Tensor& rows_t, Tensor& feed_t, Tensor& active,
                 const SamplingConfig& cfg, bool constrained, int64_t capacity, const SampleQueue& queue) {
  const int B = static_cast<int>(logits.size(0)), vocab = static_cast<int>(logits.size(1));
  const float* L = logits.data<float>();
  int32_t* history = history_t.data<int32_t>();
  int32_t* feed = feed_t.data<int32_t>();
  SampleRow* rows = reinterpret_cast<SampleRow*>(rows_t.data<int32_t>());
  const int64_t stride = capacity + 1;
  std::vector<int32_t> candidates;
  std::vector<double> weights;
  candidates.reserve(vocab);
  for (int b = 0; b < B; b++) {
    SampleRow& r = rows[b];
    int32_t* h = history + int64_t(r.sample_id - queue.first_sample_id) * stride;
    if (row_draws_at(r, r.position)) {
      const float u = sampling_uniform(cfg.seed, r.position + 1, r.sample_id);
      const int32_t token =
          sample_row(L + int64_t(b) * vocab, vocab, cfg, u, constrained ? &r.constraint : nullptr, candidates, weights);
      if (accept_draw(r, h, token, r.position, capacity)) {
        queue.ends[r.sample_id - queue.first_sample_id] = {r.length, r.ended};
        (*active.data<int32_t>())--;
      }
    }
    feed[b] = finish_step(r, h);
    if (queue.refill) {
      queue.restarts[b] = row_can_refill(r);
      if (queue.restarts[b]) {
        refill_row(r, queue.fresh, (*queue.next)++, queue.samples, queue.first_sample_id);
        feed[b] = history[int64_t(r.sample_id - queue.first_sample_id) * stride];
      }
    }
    if (queue.live) queue.live[b] = row_is_live(r);
  }
}

}  // namespace iflame::ops::cpu
