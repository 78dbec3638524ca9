// layers.cpp: forward passes of the iFlame layers.
#include "nn/layers.h"

#include <cmath>
#include <cstdlib>

#include "autograd/recompute.h"
#include "core/error.h"
#include "ops/linear_attention.h"

namespace iflame {

const char* recompute_name(Recompute r) {
  return r == Recompute::Blocks ? "blocks" : r == Recompute::Ffn ? "ffn" : "none";
}

std::string recompute_label(Recompute r, int ffn_blocks) {
  if (r == Recompute::Ffn && ffn_blocks >= 0) return "ffn:" + std::to_string(ffn_blocks);
  return recompute_name(r);
}

Variable ParameterList::add(const std::string& name, const Shape& shape, Device device) {
  IFLAME_CHECK(!find(name).defined(), "parameter ", name, " registered twice");
  Variable v(Tensor::zeros(shape, DType::F32, device), true);
  items_.push_back({name, v});
  return v;
}

Variable ParameterList::find(const std::string& name) const {
  for (const auto& kv : items_)
    if (kv.first == name) return kv.second;
  return Variable();
}

int64_t ParameterList::count() const {
  int64_t n = 0;
  for (const auto& kv : items_) n += kv.second.value().numel();
  return n;
}

Linear::Linear(ParameterList& params, const std::string& name, int in_, int out_, bool with_bias,
               Device device)
    : in(in_), out(out_) {
  weight = params.add(name + ".weight", {out, in}, device);
  if (with_bias) bias = params.add(name + ".bias", {out}, device);
}

Variable Linear::forward(const Variable& x, const ForwardContext& ctx) const {
  return ag::linear(x, weight, bias, ctx.matmul);
}

RMSNorm::RMSNorm(ParameterList& params, const std::string& name, int dim, float eps_, Device device)
    : eps(eps_) {
  weight = params.add(name + ".weight", {dim}, device);
}

Variable RMSNorm::forward(const Variable& x) const { return ag::rms_norm(x, weight, eps); }
Variable RMSNorm::forward(const Variable& x, DType out_dtype) const { return ag::rms_norm(x, weight, eps, out_dtype); }

FeedForward::FeedForward(ParameterList& params, const std::string& prefix, int dim, int hidden,
                         Device device)
    : proj1(params, prefix + ".proj1", dim, hidden, true, device),
      proj2(params, prefix + ".proj2", dim, hidden, true, device),
      proj3(params, prefix + ".proj3", hidden, dim, true, device) {}

Variable FeedForward::forward(const Variable& x, const ForwardContext& ctx) const {
  const int hidden = proj1.out, align = ctx.ffn_align > 1 ? ctx.ffn_align : 1;
  const int padded = (hidden + align - 1) / align * align;
  if (padded == hidden) return proj3.forward(ag::swiglu(proj1.forward(x, ctx), proj2.forward(x, ctx)), ctx);
  // Zero rows of proj1/proj2 (and zero biases) give hidden units a = b = 0, whose
  // gate silu(0) * 0 is 0, met by zero columns of proj3: the same function, with
  // aligned widths; the padded parts' gradients are dropped.
  const int in = proj1.in;
  auto padded_linear = [&](const Linear& l, const Variable& v, const Shape& w_shape, int64_t b_len) {
    return ag::linear(v, ag::zero_pad(l.weight, w_shape),
                      l.bias.defined() ? ag::zero_pad(l.bias, {b_len}) : Variable(), ctx.matmul);
  };
  Variable gate;
  if (x.value().is_cuda() && proj1.bias.defined() && proj2.bias.defined()) {
    // On the GPU proj1 and proj2 are one product (packed weights), the gate reads
    // its packed output, and the biases' gradients come from the gate's backward.
    gate = ag::swiglu_pair(x, proj1.weight, proj1.bias, proj2.weight, proj2.bias, padded, ctx.matmul);
  } else {
    Variable a = padded_linear(proj1, x, {padded, in}, padded);
    Variable b = padded_linear(proj2, x, {padded, in}, padded);
    gate = ag::swiglu(a, b);
  }
  return padded_linear(proj3, gate, {proj3.out, padded}, proj3.out);
}

Attention::Attention(ParameterList& params, const std::string& prefix, const IFlameConfig& cfg,
                     bool full_, Device device)
    : full(full_), heads(cfg.heads), head_dim(cfg.head_dim()) {
  q_proj = Linear(params, prefix + ".q_proj", cfg.dim, cfg.dim, false, device);
  k_proj = Linear(params, prefix + ".k_proj", cfg.dim, cfg.dim, false, device);
  v_proj = Linear(params, prefix + ".v_proj", cfg.dim, cfg.dim, false, device);
  out_proj = Linear(params, prefix + ".out_proj", cfg.dim, cfg.dim, false, device);
  if (!full) {
    rms_norm = RMSNorm(params, prefix + ".rms_norm", cfg.dim, cfg.norm_eps, device);
    slopes = ops::linear_attention_slopes(heads);
  }
}

Variable Attention::forward(const Variable& x, const ForwardContext& ctx) const {
  const int64_t B = x.value().size(0), T = x.value().size(1);
  const Shape split = {B, T, heads, head_dim}, merged = {B, T, heads * head_dim};
  Variable q = ag::rope(ag::reshape(q_proj.forward(x, ctx), split), 0);
  Variable k = ag::rope(ag::reshape(k_proj.forward(x, ctx), split), 0);
  Variable v = ag::reshape(v_proj.forward(x, ctx), split);
  Variable o;
  if (full) {
    o = ag::reshape(ag::causal_attention(q, k, v, 1.0f / std::sqrt(static_cast<float>(head_dim))), merged);
  } else {
    o = rms_norm.forward(ag::reshape(ag::linear_attention(q, k, v, slopes), merged));
  }
  return out_proj.forward(o, ctx);
}

Block::Block(ParameterList& params, const std::string& prefix, const IFlameConfig& cfg, bool full,
             Device device) {
  // Registration order follows the reference's state dict: attn, feed_forward, norm1, norm2.
  attn = Attention(params, prefix + ".attn", cfg, full, device);
  feed_forward = FeedForward(params, prefix + ".feed_forward", cfg.dim, cfg.hidden(), device);
  norm1 = RMSNorm(params, prefix + ".norm1", cfg.dim, cfg.norm_eps, device);
  norm2 = RMSNorm(params, prefix + ".norm2", cfg.dim, cfg.norm_eps, device);
}

Variable Block::forward(const Variable& x, const ForwardContext& ctx) const {
  // The branches run in ctx.activations; the residual adds take a bf16 branch
  // output as it is (the add reads either dtype and writes the residual's).
  const DType act = ctx.activations;
  // h = x + attn(norm1(x)) and norm2(h) in one pass over the row.
  const ag::AddNorm hn = ag::add_rms_norm(x, attn.forward(norm1.forward(x, act), ctx), norm2.weight, norm2.eps, act);
  const Variable& h = hn.sum;
  const Variable& n2 = hn.normed;
  if (ctx.recompute == Recompute::Ffn) {  // keep n2 only; run the feed-forward again in backward
    const FeedForward& ff = feed_forward;
    return ag::add(h, ag::recomputed(n2, [&ff, ctx](const Variable& in) { return ff.forward(in, ctx); }));
  }
  return ag::add(h, feed_forward.forward(n2, ctx));
}

}  // namespace iflame
