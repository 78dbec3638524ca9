// generate.h: the sampling loop: B sequences decoded in lockstep from a prompt
// (the START row, or START + a partial mesh) until each has sampled END or
// reached the face limit; or N samples through B rows (continuous batching: a
// row whose sample is done starts the next one at its next face boundary, so
// the batch never waits for its longest sample). Decoding (infer/decode.h) and
// sampling (infer/device_sampler.h) both stay on the model's device.
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
  bool constrained = true;   // mask tokens that break the canonical order (infer/constrain.h); false: the raw model
  bool cuda_graphs = true;   // GPU: replay each step from a CUDA graph (infer/decode.h)
  DecodeStep decode_step = DecodeStep::Layered;  // which kernels run a step (infer/decode.h)
};

struct GenerateStats {
  int64_t steps = 0;             // decoding steps (batch positions fed; on the GPU up to a
                                 // few more than needed: DeviceSampler::finished() may be late)
  int64_t sampled_tokens = 0;    // tokens drawn, over all rows (END included)
  double seconds = 0;            // wall time of the whole loop
  size_t cache_bytes = 0;        // of the decode state
  const char* decode_step = "";  // the kernels that ran the steps: "persistent" or "layered"
};

// Samples `batch` sequences; row b draws with sample id first_sample_id + b.
// prompt: empty (START row) or starting with the START row, with fewer than
// 9 * (max_faces + 1) tokens.
std::vector<GeneratedSequence> generate(const ModelWeights& model, int batch, const std::vector<int32_t>& prompt,
                                        const GenerateConfig& cfg, uint64_t first_sample_id,
                                        GenerateStats* stats = nullptr);

// Samples `samples` sequences (sample i draws with sample id first_sample_id + i)
// with `batch` rows in flight: with samples > batch, continuous batching. A
// sample's tokens depend on the seed, its id and the model's arithmetic only:
// on the CPU they are those generate() gives it at any batch. Holds the tokens
// of all samples on the device (4 * samples * 9 * (max_faces + 1) bytes).
std::vector<GeneratedSequence> generate_samples(const ModelWeights& model, int64_t samples, int batch,
                                                const std::vector<int32_t>& prompt, const GenerateConfig& cfg,
                                                uint64_t first_sample_id, GenerateStats* stats = nullptr);

}  // namespace iflame::infer
