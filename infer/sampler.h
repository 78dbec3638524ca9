// sampler.h: choosing the next token from logits (spec §4: temperature 1,
// top-k 50, then top-p 0.95): the host reference.
//
// Order, as common practice (and the reference) does it: divide by the
// temperature, keep the k most likely tokens, renormalise them, keep the
// smallest prefix (most likely first) whose probability reaches top_p, draw.
// The draw for sample `sample_id` at sequence position `position` is Philox
// (seed, stream = position, index = sample_id): it does not depend on the batch
// a sample shares or on the other samples, so a seed fixes every sample.
// PAD and START are never drawn (the model is never trained to predict them).
//
// The sampling loop (infer/generate.cpp) does not call these: it draws with
// infer/device_sampler.h, on the model's device, through the sampling op
// (ops/sample_step.h) built from the per-row pieces of ops/sampling_core.h
// (SamplingConfig and sampling_uniform live there too), which give exactly
// sample_token()'s token for the same logits and draw. These
// plain functions stay as the readable definition the tests hold it to.
#pragma once
#include <cstdint>
#include <vector>

#include "ops/sampling_core.h"

namespace iflame::infer {

// The settings and the draw, shared with the sampling op.
using ops::SamplingConfig;
using ops::sampling_uniform;

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
