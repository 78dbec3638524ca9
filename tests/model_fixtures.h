// model_fixtures.h: small models and token sequences shared by the decoding
// and training suites.
#pragma once
#include <memory>
#include <vector>

#include "core/random.h"
#include "core/tokens.h"
#include "ops/sampling_core.h"
#include "nn/iflame.h"
#include "nn/model_weights.h"

namespace iflame::test {

// A randomly initialised model of width `dim` with `heads` heads (other settings
// as the default configuration), initialised on the CPU from `seed` and copied
// to `device`, so the same seed gives the same weights on either device.
inline std::unique_ptr<IFlame> random_model(int dim, int heads, Device device, uint64_t seed) {
  IFlameConfig cfg;
  cfg.dim = dim;
  cfg.heads = heads;
  auto m = std::make_unique<IFlame>(cfg, Device::CPU);
  Generator g(seed);
  m->init(g);
  if (device == Device::CPU) return m;
  auto on_device = std::make_unique<IFlame>(cfg, device);
  for (size_t i = 0; i < m->parameters().items().size(); i++)
    on_device->parameters().items()[i].second.mutable_value().copy_from(m->parameters().items()[i].second.value());
  return on_device;
}

// The model with its END logit raised by `end_bias`: its samples end early and
// at very different lengths (rows die and are refilled all through a run).
inline ModelWeights with_end_bias(const ModelWeights& model, float end_bias) {
  ModelWeights w = model;
  const LinearWeights& output = w.output_proj;
  std::vector<float> bias = output.bias.defined() ? output.bias.to_floats() : std::vector<float>(output.out, 0.0f);
  bias[kEndToken] += end_bias;
  w.output_proj.bias = Tensor::from_floats(bias, {int64_t(bias.size())}, model.device());
  return w;
}

// START row, then coordinates (and the odd END), B rows of length T.
inline Tensor random_tokens(int64_t B, int64_t T, uint64_t seed) {
  std::vector<int32_t> t(B * T);
  for (int64_t b = 0; b < B; b++)
    for (int64_t i = 0; i < T; i++) {
      float u = ops::sampling_uniform(seed, i, b);
      t[b * T + i] = i < kTokensPerFace ? kStartToken : static_cast<int32_t>(u * 129) % 129;
      if (i >= kTokensPerFace && u > 0.995f) t[b * T + i] = kEndToken;
    }
  return Tensor::from_ints(t, {B, T});
}

}  // namespace iflame::test
