// config.cpp: presets and validation of IFlameConfig.
#include "nn/config.h"

#include "core/error.h"

namespace iflame {

void IFlameConfig::validate() const {
  IFLAME_REQUIRE(dim > 0 && heads > 0 && dim % heads == 0, "model width ", dim,
               " is not divisible by the head count ", heads);
  IFLAME_REQUIRE(head_dim() % 4 == 0, "head dimension ", head_dim(), " must be a multiple of 4 (RoPE)");
  IFLAME_REQUIRE(blocks_per_stage > 0 && full_attention_every > 0, "bad block layout");
  IFLAME_REQUIRE(vocab == kVocabSize, "vocabulary must be ", kVocabSize, ", got ", vocab);
  IFLAME_REQUIRE(hidden() > 0, "bad FFN width ", hidden());
}

std::string IFlameConfig::describe() const {
  return str("d=", dim, " heads=", heads, " blocks=", total_blocks(), " ffn=", hidden());
}

IFlameConfig IFlameConfig::preset(const std::string& name) {
  IFlameConfig c;
  if (name == "shapenet" || name == "default") return c;
  if (name == "small") {
    c.dim = 256;
    c.heads = 8;
    return c;
  }
  if (name == "tiny") {
    c.dim = 64;
    c.heads = 2;
    return c;
  }
  IFLAME_REJECT("unknown model preset '", name, "' (expected shapenet, small or tiny)");
}

}  // namespace iflame
