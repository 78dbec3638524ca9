// layers.h: the building blocks of iFlame, with parameters under the published
// names. Each layer registers its parameters (in the reference's state-dict
// order) into a ParameterList when constructed, and its forward is written with
// the differentiable functions of autograd/functions.h.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "autograd/functions.h"
#include "nn/config.h"

namespace iflame {

// An ordered list of named parameters: the model's state dict.
class ParameterList {
 public:
  Variable add(const std::string& name, const Shape& shape, Device device);
  const std::vector<std::pair<std::string, Variable>>& items() const { return items_; }
  std::vector<std::pair<std::string, Variable>>& items() { return items_; }
  Variable find(const std::string& name) const;  // undefined Variable if absent
  int64_t count() const;                         // number of scalars

 private:
  std::vector<std::pair<std::string, Variable>> items_;
};

// What a recorded (training) forward keeps for backward. None: every function's
// saved tensors. Blocks: only each transformer block's input; the block's
// forward runs again during backward (autograd/recompute.h), about a third
// more compute for a fraction of the memory (training/memory_model.h). Ffn:
// only the feed-forward's input, not its three hidden-width tensors (the
// largest part of a block's); the feed-forward runs again during backward, its
// products about a fifth more compute, attention never twice. Ffn may be
// limited to the K longest blocks (ForwardContext::ffn_recompute_blocks,
// `--recompute ffn:K`): a step between none and ffn in memory and in time.
enum class Recompute { None, Blocks, Ffn };
const char* recompute_name(Recompute r);      // "none", "blocks", "ffn"
// "ffn:K" for a limited ffn, else recompute_name (what ./train's --recompute
// reads back: training/train_config.h).
std::string recompute_label(Recompute r, int ffn_blocks);

// What every forward needs to know besides its input.
struct ForwardContext {
  DType matmul = DType::F32;  // F32, or BF16 operands with f32 accumulation
  // Inside each block: F32, or BF16 (GPU only, with BF16 products): the norm
  // outputs, q/k/v, attention, and the feed-forward's hidden tensors are bf16
  // (half the bytes and the saved memory; the attention kernels' bf16 path),
  // while the residual stream between blocks stays f32.
  DType activations = DType::F32;
  // The feed-forward's hidden width is padded with zero rows/columns of the
  // weights to a multiple of this (1: no padding). The function is the same;
  // on the GPU an odd width (1365) sends cuBLAS to its unaligned kernels at a
  // fraction of the aligned rate (spec §6), so training pads to 8 there.
  int ffn_align = 1;
  Recompute recompute = Recompute::None;  // only matters while the tape records
  // With Recompute::Ffn: how many blocks rebuild their feed-forward, the
  // longest first (IFlame::ffn_recompute_rank); -1: all of them.
  int ffn_recompute_blocks = -1;
};

struct Linear {
  Linear() = default;
  Linear(ParameterList& params, const std::string& name, int in, int out, bool bias, Device device);
  Variable forward(const Variable& x, const ForwardContext& ctx) const;
  Variable weight, bias;
  int in = 0, out = 0;
};

struct RMSNorm {
  RMSNorm() = default;
  RMSNorm(ParameterList& params, const std::string& name, int dim, float eps, Device device);
  Variable forward(const Variable& x) const;
  Variable forward(const Variable& x, DType out_dtype) const;  // the output cast to out_dtype (ag::rms_norm)
  Variable weight;
  float eps = 1e-5f;
};

// proj3(silu(proj1 x) * proj2 x)
struct FeedForward {
  FeedForward() = default;
  FeedForward(ParameterList& params, const std::string& prefix, int dim, int hidden, Device device);
  Variable forward(const Variable& x, const ForwardContext& ctx) const;
  Linear proj1, proj2, proj3;
};

// Full (softmax) or linear (decayed) attention; the linear kind ends with an RMSNorm.
struct Attention {
  Attention() = default;
  Attention(ParameterList& params, const std::string& prefix, const IFlameConfig& cfg, bool full,
            Device device);
  // x [B, T, d] -> [B, T, d]
  Variable forward(const Variable& x, const ForwardContext& ctx) const;
  bool full = false;
  int heads = 0, head_dim = 0;
  Linear q_proj, k_proj, v_proj, out_proj;
  RMSNorm rms_norm;  // linear attention only
  std::vector<float> slopes;
};

// x = x + attn(norm1 x); x = x + ffn(norm2 x)
struct Block {
  Block() = default;
  Block(ParameterList& params, const std::string& prefix, const IFlameConfig& cfg, bool full, Device device);
  Variable forward(const Variable& x, const ForwardContext& ctx) const;
  Attention attn;
  FeedForward feed_forward;
  RMSNorm norm1, norm2;
};

}  // namespace iflame
