// generate.h: the sampling loop: B sequences decoded in lockstep from a prompt
// (the START row, or START + a partial mesh) until each has sampled END or
// reached the face limit; or N samples through B rows (continuous batching: a
// row whose sample is done starts the next one at its next face boundary, so
// the batch never waits for its longest sample). Decoding (infer/decode.h) and
// sampling (infer/device_sampler.h) both stay on the model's device.
//
// The drain: once every sample left is already in a row and at most half the
// rows are still live, the loop moves the live rows into a state and sampler
// of that many rows (compact_rows, keep_rows) and goes on at the smaller batch,
// again as more rows finish (64 -> 32 -> ... -> 1), instead of running the
// products and linear attention of the dead rows at every step. A step is
// launch bound at small batches, so the drain's steps get cheaper as it goes.
// A sample's tokens do not depend on it (draws are named by sample and
// position, each row keeps its own position); cfg.compact_drain turns it off.
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
  bool compact_drain = true;  // the drain goes on with the live rows only (above); false: all rows to the end
};

struct GenerateStats {
  int64_t steps = 0;             // decoding steps (batch positions fed; on the GPU up to a
                                 // few more than needed: DeviceSampler::finished() may be late)
  int64_t sampled_tokens = 0;    // tokens drawn, over all rows (END included)
  int64_t row_steps = 0;         // the batch at each step, summed over the steps:
                                 // sampled_tokens / row_steps is how busy the rows were
  int compactions = 0;           // times the drain moved to fewer rows
  int first_rows = 0, last_rows = 0;  // the batch at the start and at the end
  double seconds = 0;            // wall time of the whole loop
  size_t cache_bytes = 0;        // of the decode state at the start (the largest)
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
