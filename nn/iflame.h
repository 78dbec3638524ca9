// iflame.h: the iFlame hourglass transformer (spec §2).
//
//   tokens -> embedding -> norm                       level 0, length T (a multiple of 9)
//   encoder_blocks.0.*  -> skip0 -> avg-pool 3        level 1, T/3
//   encoder_blocks.1.*  -> skip1 -> avg-pool 3        level 2, T/9 (one position per face)
//   bottlenecke.*, bottleneckd.*
//   repeat 3 + shift 2, skip_weights2[0] * x + skip1, decoder_blocks.0.*
//   repeat 3 + shift 2, skip_weights2[1] * x + skip0, decoder_blocks.1.*
//   output_proj -> logits
#pragma once
#include <array>
#include <vector>

#include "nn/config.h"
#include "nn/layers.h"
#include "nn/model_weights.h"

namespace iflame {

struct Generator;

class IFlame {
 public:
  IFlame(const IFlameConfig& config, Device device);

  // PyTorch's default initialisation (spec §2), drawn from gen.
  void init(Generator& gen);

  // tokens: i32 [B, T] on any device (checked to lie in [0, vocab)); T is padded
  // with token 0 to a multiple of 9 first, as the reference does. Returns logits
  // f32 [B, T_padded, vocab]. With ctx.recompute == Blocks and the tape
  // recording, every block is ag::recomputed (autograd/recompute.h): the same
  // values and gradients, only each block's input kept for backward.
  Variable forward(const Tensor& tokens, const ForwardContext& ctx) const;

  struct LossOutput {
    Variable loss;    // f32 [1]
    Tensor accuracy;  // f32 [1]
    Tensor counted;   // f32 [1], predicted tokens that count
    Variable logits;  // [B, T_padded, vocab]
  };
  // Next-token loss of spec §3: logits at positions 8..T-2 against tokens 9..T-1,
  // PAD targets ignored.
  LossOutput loss(const Tensor& tokens, const ForwardContext& ctx) const;

  const IFlameConfig& config() const { return config_; }
  Device device() const { return device_; }
  ParameterList& parameters() { return params_; }
  const ParameterList& parameters() const { return params_; }
  void zero_grad();

  // The six stages in the order the input flows through them.
  static constexpr int kStages = 6;
  // Where block `index` of stage s comes when blocks are ordered longest
  // first: the two full-length stages (encoder_blocks.0, decoder_blocks.1),
  // then the T/3 ones, then the bottleneck's; in stage order within a length.
  // `--recompute ffn:K` rebuilds the feed-forward of ranks 0 .. K-1.
  static int ffn_recompute_rank(int s, int index, int blocks_per_stage);
  // What block `index` of stage s keeps under ctx: ctx.recompute, except that
  // Ffn past ffn:K's limit keeps everything (None). The model and the memory
  // model (training/memory_model.h) both ask this.
  static Recompute block_recompute(const ForwardContext& ctx, int s, int index, int blocks_per_stage);
  static const char* stage_name(int stage);  // "encoder_blocks.0", ..., "decoder_blocks.1"
  const std::vector<Block>& stage(int s) const { return stages_[s]; }
  const Variable& embedding() const { return embedding_; }
  const RMSNorm& norm() const { return norm_; }
  const Linear& output_proj() const { return output_proj_; }
  const Variable& skip_weights() const { return skip_weights2_; }
  // The tape-free view of the weights (nn/model_weights.h), sharing the
  // parameters' storage. A model converts to it where one is read, as
  // decoding's begin(model, ...) does.
  ModelWeights weights() const;
  operator ModelWeights() const { return weights(); }

 private:
  Variable run_stage(int s, Variable x, const ForwardContext& ctx) const;

  IFlameConfig config_;
  Device device_;
  ParameterList params_;
  Variable skip_weights2_, embedding_;
  std::array<std::vector<Block>, kStages> stages_;
  Linear output_proj_;
  RMSNorm norm_;
};

// Tokens padded on the right with `value` to a multiple of 9 (CPU, i32 [B, T]).
Tensor pad_tokens_to_faces(const Tensor& tokens, int value);
// Targets for the next-token loss: targets[b, t] = tokens[b, t+1] for 8 <= t <= T-2,
// PAD elsewhere (and wherever the next token is PAD). i32 [B, T_out] on the CPU.
Tensor next_token_targets(const Tensor& tokens, int64_t T_out);

}  // namespace iflame
