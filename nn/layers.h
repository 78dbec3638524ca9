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
#include "nn/forward_context.h"

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

// Recompute (nn/forward_context.h) by name.
const char* recompute_name(Recompute r);      // "none", "blocks", "ffn"
// "none", "blocks", "ffn" or "ffn:K" (K >= 0 blocks); throws on anything else.
// ffn_blocks, when given, is set to K, or -1 (every block) for the others.
Recompute parse_recompute(const std::string& name, int* ffn_blocks = nullptr);
// What parse_recompute reads back: "ffn:K" for a limited ffn, else recompute_name.
std::string recompute_label(Recompute r, int ffn_blocks);

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
