// iflame.cpp: construction, initialisation and forward pass of the hourglass.
#include "nn/iflame.h"

#include <cmath>

#include "autograd/recompute.h"
#include "core/error.h"
#include "core/interrupt.h"
#include "core/random.h"

namespace iflame {

const char* IFlame::stage_name(int s) {
  static const char* names[kStages] = {"encoder_blocks.0", "encoder_blocks.1", "bottlenecke",
                                       "bottleneckd",      "decoder_blocks.0", "decoder_blocks.1"};
  return names[s];
}

IFlame::IFlame(const IFlameConfig& config, Device device) : config_(config), device_(device) {
  config_.validate();
  // Registration order = the reference's state-dict order.
  skip_weights2_ = params_.add("skip_weights2", {2}, device);
  embedding_ = params_.add("embedding.weight", {config_.vocab, config_.dim}, device);
  int block_number = 0;
  for (int s = 0; s < kStages; s++) {
    for (int i = 0; i < config_.blocks_per_stage; i++) {
      block_number++;
      bool full = block_number % config_.full_attention_every == 0;
      stages_[s].emplace_back(params_, str(stage_name(s), ".", i), config_, full, device);
    }
  }
  output_proj_ = Linear(params_, "output_proj", config_.dim, config_.vocab, true, device);
  norm_ = RMSNorm(params_, "norm", config_.dim, config_.norm_eps, device);
}

void IFlame::init(Generator& gen) {
  for (auto& [name, var] : params_.items()) {
    Tensor& t = var.mutable_value();
    Tensor host = Tensor::empty(t.shape(), DType::F32, Device::CPU);
    bool is_norm = name.find("norm") != std::string::npos;
    if (name == "skip_weights2" || is_norm) {
      host.fill_(1.0f);
    } else if (name == "embedding.weight") {
      fill_normal(host, gen, 0.0f, 1.0f);
    } else {
      // Linear weight [out, in] or bias [out]: U(-1/sqrt(in), 1/sqrt(in)).
      std::string base = name.substr(0, name.rfind('.'));
      int64_t fan_in = params_.find(base + ".weight").value().size(1);
      float bound = 1.0f / std::sqrt(static_cast<float>(fan_in));
      fill_uniform(host, gen, -bound, bound);
    }
    t.copy_from(host);
  }
}

void IFlame::zero_grad() {
  for (auto& kv : params_.items()) kv.second.zero_grad();
}

Tensor pad_tokens_to_faces(const Tensor& tokens, int value) {
  IFLAME_CHECK(tokens.ndim() == 2 && tokens.dtype() == DType::I32, "tokens must be i32 [B, T], got ",
               tokens.describe());
  const int64_t B = tokens.size(0), T = tokens.size(1);
  const int64_t Tp = (T + kTokensPerFace - 1) / kTokensPerFace * kTokensPerFace;
  Tensor src = tokens.to(Device::CPU).contiguous();
  if (Tp == T) return src;
  Tensor out = Tensor::full({B, Tp}, static_cast<float>(value), DType::I32);
  out.slice(1, 0, T).copy_from(src);
  return out;
}

Tensor next_token_targets(const Tensor& tokens, int64_t T_out) {
  Tensor src = tokens.to(Device::CPU).contiguous();
  const int64_t B = src.size(0), T = src.size(1);
  Tensor targets = Tensor::full({B, T_out}, static_cast<float>(kPadToken), DType::I32);
  const int32_t* in = src.data<int32_t>();
  int32_t* out = targets.data<int32_t>();
  for (int64_t b = 0; b < B; b++)
    for (int64_t t = kTokensPerFace - 1; t + 1 < T && t < T_out; t++) out[b * T_out + t] = in[b * T + t + 1];
  return targets;
}

int IFlame::ffn_recompute_rank(int s, int index, int blocks_per_stage) {
  static const int order[kStages] = {0, 2, 4, 5, 3, 1};  // stage -> its place, longest first
  return order[s] * blocks_per_stage + index;
}

Recompute IFlame::block_recompute(const ForwardContext& ctx, int s, int index, int blocks_per_stage) {
  const bool past_limit = ctx.ffn_recompute_blocks >= 0 &&
                          ffn_recompute_rank(s, index, blocks_per_stage) >= ctx.ffn_recompute_blocks;
  return ctx.recompute == Recompute::Ffn && past_limit ? Recompute::None : ctx.recompute;
}

Variable IFlame::run_stage(int s, Variable x, const ForwardContext& ctx) const {
  for (size_t i = 0; i < stages_[s].size(); i++) {
    throw_if_interrupted();  // also where nothing is recorded (validation, recomputed blocks)
    const Block& block = stages_[s][i];
    ForwardContext here = ctx;
    here.recompute = block_recompute(ctx, s, int(i), config_.blocks_per_stage);
    if (here.recompute == Recompute::Blocks)  // keep x only; run the block again in backward
      x = ag::recomputed(x, [&block, here](const Variable& in) { return block.forward(in, here); });
    else  // None, or Ffn: Block::forward rebuilds its feed-forward
      x = block.forward(x, here);
  }
  return x;
}

Variable IFlame::forward(const Tensor& tokens, const ForwardContext& ctx) const {
  IFLAME_CHECK(tokens.ndim() == 2 && tokens.dtype() == DType::I32, "tokens must be i32 [B, T], got ",
               tokens.describe());
  Tensor padded = pad_tokens_to_faces(tokens, 0);
  {
    const int32_t* p = padded.data<int32_t>();
    for (int64_t i = 0; i < padded.numel(); i++)
      IFLAME_CHECK(p[i] >= 0 && p[i] < config_.vocab, "token ", p[i], " at position ", i % padded.size(1),
                   " of sequence ", i / padded.size(1), " is outside the vocabulary [0, ", config_.vocab, ")");
  }
  IFLAME_CHECK(ctx.activations == DType::F32 ||
                   (ctx.activations == DType::BF16 && ctx.matmul == DType::BF16 && device_ == Device::CUDA),
               "bf16 activations need bf16 products on the GPU (asked: ", dtype_name(ctx.activations),
               " activations, ", dtype_name(ctx.matmul), " products on ", device_name(device_), ")");
  const int64_t T = padded.size(1);
  Tensor tok = padded.to(device_);

  Variable x = ag::embedding(embedding_, tok, DType::F32);
  x = norm_.forward(x);
  x = run_stage(0, x, ctx);
  Variable skip0 = x;
  x = run_stage(1, ag::avg_pool3(x), ctx);
  Variable skip1 = x;
  x = run_stage(2, ag::avg_pool3(x), ctx);
  x = run_stage(3, x, ctx);
  x = ag::skip_scale_add(ag::repeat3_shift2(x, T / 3), skip_weights2_, 0, skip1);
  x = run_stage(4, x, ctx);
  x = ag::skip_scale_add(ag::repeat3_shift2(x, T), skip_weights2_, 1, skip0);
  x = run_stage(5, x, ctx);
  return output_proj_.forward(x, ctx);
}

IFlame::LossOutput IFlame::loss(const Tensor& tokens, const ForwardContext& ctx) const {
  LossOutput r;
  r.logits = forward(tokens, ctx);
  const int64_t B = r.logits.value().size(0), T = r.logits.value().size(1);
  Tensor targets = next_token_targets(tokens, T).to(device_);
  ag::LossAndAccuracy ce =
      ag::cross_entropy(ag::reshape(r.logits, {B * T, config_.vocab}), targets.view({B * T}), kPadToken);
  r.loss = ce.loss;
  r.accuracy = ce.accuracy;
  r.counted = ce.counted;
  return r;
}

}  // namespace iflame
