// config.h: the shape of an iFlame model, and the named presets.
#pragma once
#include <cstdint>
#include <string>

#include "core/tokens.h"

namespace iflame {

struct IFlameConfig {
  int dim = 512;                  // model width d
  int heads = 16;                 // attention heads (head dim = dim / heads)
  int blocks_per_stage = 4;       // blocks in each of the 6 stages
  int full_attention_every = 4;   // block i (1-based, over all 24) is full attention when i % this == 0
  int vocab = kVocabSize;
  int ffn_hidden = 0;             // 0: int(8/3 * dim), as published
  float norm_eps = 1e-5f;

  int head_dim() const { return dim / heads; }
  int hidden() const { return ffn_hidden > 0 ? ffn_hidden : static_cast<int>(8.0 / 3.0 * dim); }
  int total_blocks() const { return 6 * blocks_per_stage; }
  // Throws with a message when the numbers cannot make a model.
  void validate() const;
  std::string describe() const;  // "d=512 heads=16 blocks=24 ffn=1365"

  // "shapenet" (published, default), "small", "tiny" (the golden model).
  static IFlameConfig preset(const std::string& name);
};

}  // namespace iflame
