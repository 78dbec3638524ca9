// model_weights.h: a tape-free view of an iFlame model's weights, for code that
// reads weights and records nothing (cached decoding, infer/decode.h). The
// tensors are the model's own parameter values (shared, not copied), grouped as
// nn/iflame.h's hourglass groups them; nothing here includes autograd/, so
// infer/ compiles without the tape.
#pragma once
#include <array>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "nn/config.h"

namespace iflame {

struct Generator;

struct LinearWeights {
  Tensor weight, bias;  // [out, in] f32, [out] f32 or undefined
  int in = 0, out = 0;
};

struct NormWeights {
  Tensor weight;  // [dim] f32
  float eps = 1e-5f;
};

// One transformer block (nn/layers.h's Block): x = x + attn(norm1 x);
// x = x + proj3(silu(proj1 n) * proj2 n) with n = norm2 x.
struct BlockWeights {
  bool full = false;  // full (softmax) attention, else linear attention
  int heads = 0, head_dim = 0;
  LinearWeights q_proj, k_proj, v_proj, out_proj;
  NormWeights attn_norm;     // linear attention's output RMSNorm
  std::vector<float> slopes;  // linear attention's decay slopes
  LinearWeights proj1, proj2, proj3;
  NormWeights norm1, norm2;
};

class ModelWeights {
 public:
  static constexpr int kStages = 6;  // encoder_blocks.0 .. decoder_blocks.1, as IFlame::kStages

  ModelWeights(const IFlameConfig& config, Device device) : config_(config), device_(device) {}
  const IFlameConfig& config() const { return config_; }
  Device device() const { return device_; }

  Tensor embedding;     // [vocab, dim]
  NormWeights norm;     // after the embedding
  Tensor skip_weights;  // skip_weights2 [2]
  std::array<std::vector<BlockWeights>, kStages> stages;
  LinearWeights output_proj;

 private:
  IFlameConfig config_;
  Device device_;
};

// A model's weights from a native or PyTorch checkpoint file (nn/state.h's
// load_model), on `device`.
ModelWeights load_model_weights(const std::string& path, Device device);
// A model of `config` with PyTorch's default initialisation drawn from gen
// (IFlame::init), as benchmarks use it.
ModelWeights init_model_weights(const IFlameConfig& config, Device device, Generator& gen);

}  // namespace iflame
