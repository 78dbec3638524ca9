// model_weights.cpp: the tape-free view of a model's weights (model_weights.h),
// read off an IFlame's parameters.
#include "nn/model_weights.h"

#include "core/random.h"
#include "nn/iflame.h"
#include "nn/state.h"

namespace iflame {

static_assert(ModelWeights::kStages == IFlame::kStages, "one hourglass, one stage count");

namespace {
LinearWeights linear_weights(const Linear& l) {
  LinearWeights w;
  w.weight = l.weight.value();
  if (l.bias.defined()) w.bias = l.bias.value();
  w.in = l.in;
  w.out = l.out;
  return w;
}

NormWeights norm_weights(const RMSNorm& n) { return {n.weight.value(), n.eps}; }
}  // namespace

ModelWeights IFlame::weights() const {
  ModelWeights w(config_, device_);
  w.embedding = embedding_.value();
  w.norm = norm_weights(norm_);
  w.skip_weights = skip_weights2_.value();
  for (int s = 0; s < kStages; s++)
    for (const Block& block : stages_[s]) {
      const Attention& a = block.attn;
      BlockWeights b;
      b.full = a.full;
      b.heads = a.heads;
      b.head_dim = a.head_dim;
      b.q_proj = linear_weights(a.q_proj);
      b.k_proj = linear_weights(a.k_proj);
      b.v_proj = linear_weights(a.v_proj);
      b.out_proj = linear_weights(a.out_proj);
      if (!a.full) b.attn_norm = norm_weights(a.rms_norm);
      b.slopes = a.slopes;
      b.proj1 = linear_weights(block.feed_forward.proj1);
      b.proj2 = linear_weights(block.feed_forward.proj2);
      b.proj3 = linear_weights(block.feed_forward.proj3);
      b.norm1 = norm_weights(block.norm1);
      b.norm2 = norm_weights(block.norm2);
      w.stages[s].push_back(std::move(b));
    }
  w.output_proj = linear_weights(output_proj_);
  return w;
}

ModelWeights load_model_weights(const std::string& path, Device device) { return load_model(path, device)->weights(); }

ModelWeights init_model_weights(const IFlameConfig& config, Device device, Generator& gen) {
  IFlame model(config, device);
  model.init(gen);
  return model.weights();
}

}  // namespace iflame
