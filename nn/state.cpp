// state.cpp: model <-> checkpoint.
#include "nn/state.h"

#include <cmath>
#include <set>

#include "core/error.h"
#include "core/paths.h"

namespace iflame {

namespace {
int64_t count_non_finite(const Tensor& t) {
  int64_t bad = 0;
  for (float v : t.to(Device::CPU).to_floats()) bad += !std::isfinite(v);
  return bad;
}

// Before a model is built from a native checkpoint's config entries (which
// decide how much memory it takes), the tensor table must agree with them:
// the embedding's shape gives the width and vocabulary, the feed-forward's the
// hidden width, and the first stage's blocks are counted. So a config entry
// that lies (a block count of 100000) is refused before anything is allocated,
// and the model is never larger than the tensors the file holds.
void check_config_against_tensors(const IFlameConfig& c, const CheckpointData& ckpt, const std::string& source) {
  const Tensor* emb = ckpt.find_tensor("param/embedding.weight");
  IFLAME_REQUIRE(emb && emb->shape() == Shape({c.vocab, c.dim}), source, ": model.dim ", c.dim, " and model.vocab ",
                 c.vocab, " disagree with the tensor param/embedding.weight ",
                 emb ? shape_str(emb->shape()) : std::string("(absent)"));
  const Tensor* proj1 = ckpt.find_tensor("param/encoder_blocks.0.0.feed_forward.proj1.weight");
  IFLAME_REQUIRE(proj1 && proj1->shape() == Shape({c.hidden(), c.dim}), source, ": model.ffn_hidden ", c.hidden(),
                 " disagrees with the tensor param/encoder_blocks.0.0.feed_forward.proj1.weight ",
                 proj1 ? shape_str(proj1->shape()) : std::string("(absent)"));
  int blocks = 0;
  for (const auto& nt : ckpt.tensors)
    if (nt.first.rfind("param/encoder_blocks.0.", 0) == 0 && nt.first.find(".norm1.weight") != std::string::npos)
      blocks++;
  IFLAME_REQUIRE(blocks == c.blocks_per_stage, source, ": model.blocks_per_stage ", c.blocks_per_stage,
                 " disagrees with the ", blocks, " blocks of the first stage in the tensor table");
}
}  // namespace

void load_parameters(IFlame& model, const std::vector<std::pair<std::string, Tensor>>& named,
                     const std::string& source) {
  std::set<std::string> seen;
  for (const auto& [name, tensor] : named) {
    Variable p = model.parameters().find(name);
    IFLAME_REQUIRE(p.defined(), source, ": parameter '", name, "' does not exist in a model with ",
                 model.config().describe());
    IFLAME_REQUIRE(p.value().shape() == tensor.shape(), source, ": parameter '", name, "' has shape ",
                 shape_str(tensor.shape()), ", the model expects ", shape_str(p.value().shape()));
    IFLAME_REQUIRE(tensor.dtype() != DType::I32, source, ": parameter '", name, "' is an integer tensor");
    const int64_t bad = count_non_finite(tensor);
    IFLAME_REQUIRE(bad == 0, source, ": parameter '", name, "' holds ", bad, " non-finite values (NaN or inf) of ",
                   tensor.numel(), ": the weights are unusable");
    p.mutable_value().copy_from(tensor);
    seen.insert(name);
  }
  for (const auto& kv : model.parameters().items())
    IFLAME_REQUIRE(seen.count(kv.first), source, ": parameter '", kv.first, "' is missing");
}

void add_model_to_checkpoint(const IFlame& model, CheckpointData& out) {
  const IFlameConfig& c = model.config();
  out.meta.push_back({"model.dim", std::to_string(c.dim)});
  out.meta.push_back({"model.heads", std::to_string(c.heads)});
  out.meta.push_back({"model.blocks_per_stage", std::to_string(c.blocks_per_stage)});
  out.meta.push_back({"model.full_attention_every", std::to_string(c.full_attention_every)});
  out.meta.push_back({"model.vocab", std::to_string(c.vocab)});
  out.meta.push_back({"model.ffn_hidden", std::to_string(c.hidden())});
  out.meta.push_back({"model.norm_eps", str(c.norm_eps)});
  for (const auto& [name, var] : model.parameters().items()) out.tensors.push_back({"param/" + name, var.value()});
}

namespace {
int meta_int(const CheckpointData& ckpt, const std::string& key, const std::string& source) {
  return static_cast<int>(ckpt.meta_integer(key, source, 1, INT32_MAX));
}
}  // namespace

IFlameConfig config_from_checkpoint(const CheckpointData& ckpt, const std::string& source) {
  IFlameConfig c;
  c.dim = meta_int(ckpt, "model.dim", source);
  c.heads = meta_int(ckpt, "model.heads", source);
  c.blocks_per_stage = meta_int(ckpt, "model.blocks_per_stage", source);
  c.full_attention_every = meta_int(ckpt, "model.full_attention_every", source);
  c.vocab = meta_int(ckpt, "model.vocab", source);
  c.ffn_hidden = meta_int(ckpt, "model.ffn_hidden", source);
  if (const std::string* eps = ckpt.find_meta("model.norm_eps")) {
    char* end = nullptr;
    c.norm_eps = std::strtof(eps->c_str(), &end);
    IFLAME_REQUIRE(!eps->empty() && *end == '\0' && std::isfinite(c.norm_eps) && c.norm_eps > 0, source,
                   ": checkpoint entry 'model.norm_eps' = '", *eps, "' is not a positive number");
  }
  c.validate();
  check_config_against_tensors(c, ckpt, source);
  return c;
}

IFlameConfig config_from_state_dict(const std::vector<std::pair<std::string, Tensor>>& named,
                                    const std::string& source) {
  IFlameConfig c;
  const Tensor* emb = nullptr;
  const Tensor* proj1 = nullptr;
  int blocks = 0;
  for (const auto& [name, t] : named) {
    if (name == "embedding.weight") emb = &t;
    if (name == "encoder_blocks.0.0.feed_forward.proj1.weight") proj1 = &t;
    if (name.rfind("encoder_blocks.0.", 0) == 0 && name.find(".norm1.weight") != std::string::npos) blocks++;
  }
  IFLAME_REQUIRE(emb && emb->ndim() == 2, source, ": no embedding.weight: not an iFlame state dict");
  IFLAME_REQUIRE(proj1 && proj1->ndim() == 2, source, ": no encoder_blocks.0.0.feed_forward.proj1.weight");
  c.vocab = static_cast<int>(emb->size(0));
  c.dim = static_cast<int>(emb->size(1));
  IFLAME_REQUIRE(c.dim % 32 == 0, source, ": model width ", c.dim, " is not a multiple of the head size 32");
  c.heads = c.dim / 32;
  c.ffn_hidden = static_cast<int>(proj1->size(0));
  c.blocks_per_stage = blocks;
  c.validate();
  return c;
}

std::unique_ptr<IFlame> load_model(const std::string& path, Device device) {
  require_readable_file(path, "checkpoint");
  if (looks_like_torch_checkpoint(path)) {
    TorchCheckpoint t = load_torch_checkpoint(path);
    auto model = std::make_unique<IFlame>(config_from_state_dict(t.model, path), device);
    load_parameters(*model, t.model, path);
    return model;
  }
  IFLAME_REQUIRE(looks_like_native_checkpoint(path), path,
               ": neither an iflame checkpoint nor a PyTorch .pth archive");
  CheckpointData ckpt = load_checkpoint(path);
  auto model = std::make_unique<IFlame>(config_from_checkpoint(ckpt, path), device);
  std::vector<std::pair<std::string, Tensor>> params;
  for (const auto& [name, t] : ckpt.tensors)
    if (name.rfind("param/", 0) == 0) params.push_back({name.substr(6), t});
  load_parameters(*model, params, path);
  return model;
}

}  // namespace iflame
