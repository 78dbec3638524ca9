// generate.h: the sampling loop: B sequences decoded in lockstep from a prompt
// (the START row, or START + a partial mesh) until each has sampled END or
// reached the face limit. Decoding (infer/decode.h) and sampling
// (infer/device_sampler.h) both stay on the model's device.
#pragma once
#include <cstdint>
#include <vector>

#include "infer/decode.h"
#include "infer/device_sampler.h"
#include "infer/sampler.h"

namespace iflame::infer {

struct GenerateConfig {
  SamplingConfig sampling;
  int max_faces = 800;     // faces per sequence, prompt faces included
  ForwardContext ctx;      // matmul precision
  bool constrained = false;  // mask tokens that break the canonical order (infer/constrain.h)
  bool cuda_graphs = true;   // GPU: replay each step from a CUDA graph (infer/decode.h)
};

struct GenerateStats {
  int64_t steps = 0;             // decoding steps (positions fed; on the GPU up to a few
                                 // more than needed: DeviceSampler::finished() may be late)
  int64_t sampled_tokens = 0;    // tokens drawn, over all rows (END included)
  double seconds = 0;            // wall time of the whole loop
  size_t cache_bytes = 0;        // of the decode state
};

// Samples `batch` sequences; row b draws with sample id first_sample_id + b.
// prompt: empty (START row) or starting with the START row, with fewer than
// 9 * (max_faces + 1) tokens.
std::vector<GeneratedSequence> generate(const ModelWeights& model, int batch, const std::vector<int32_t>& prompt,
                                        const GenerateConfig& cfg, uint64_t first_sample_id,
                                        GenerateStats* stats = nullptr);

}  // namespace iflame::infer
