// sampler.h: choosing the next token from logits (spec §4: temperature 1,
// top-k 50, then top-p 0.95), on the host for now.
//
// Order, as common practice (and the reference) does it: divide by the
// temperature, keep the k most likely tokens, renormalise them, keep the
// smallest prefix (most likely first) whose probability reaches top_p, draw.
// The draw for sample `sample_id` at sequence position `position` is Philox
// (seed, stream = position, index = sample_id): it does not depend on the batch
// a sample shares or on the other samples, so a seed fixes every sample.
// PAD and START are never drawn (the model is never trained to predict them).
//
// sample_tokens() takes host logits; a GPU sampler with the same contract
// (same filters, same Philox draw) can replace it without touching the loop.
#pragma once
#include <cstdint>
#include <vector>

namespace iflame::infer {

struct SamplingConfig {
  float temperature = 1.0f;  // <= 0: greedy (argmax)
  int top_k = 50;            // <= 0: no top-k filter
  float top_p = 0.95f;       // >= 1: no nucleus filter
  uint64_t seed = 0;
};

// The uniform draw in [0, 1) for (seed, position, sample_id).
float sampling_uniform(uint64_t seed, uint64_t position, uint64_t sample_id);

// One token from logits[0 .. vocab) given the uniform draw u. Tokens in `banned`
// are never chosen (unless nothing else is left).
int32_t sample_token(const float* logits, int vocab, const SamplingConfig& cfg, float u,
                     const std::vector<int32_t>& banned);

// Host logits f32 [B, V] (row-major): a token for every row whose active flag is
// set (others get -1). sample_ids[b] names row b's sample for the draw.
std::vector<int32_t> sample_tokens(const std::vector<float>& logits, int vocab, const SamplingConfig& cfg,
                                   uint64_t position, const std::vector<uint64_t>& sample_ids,
                                   const std::vector<bool>& active);

}  // namespace iflame::infer
