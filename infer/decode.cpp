// decode.cpp: one cached decoding step through the hourglass (see decode.h).
#include "infer/decode.h"

#include <cmath>

#include "core/error.h"
#include "infer/cached_attention.h"
#include "ops/elementwise.h"
#include "ops/embedding.h"
#include "ops/linear.h"
#include "ops/linear_attention.h"
#include "ops/resample.h"
#include "ops/rms_norm.h"
#include "ops/rope.h"
#include "ops/swiglu.h"

namespace iflame::infer {

namespace {

Tensor rms_norm(const Tensor& x, const RMSNorm& norm) {
  Tensor inv_rms;
  return ops::rms_norm_forward(x, norm.weight.value(), norm.eps, inv_rms);
}

Tensor linear(const Tensor& x, const Linear& layer, const ForwardContext& ctx) {
  const Tensor* bias = layer.bias.defined() ? &layer.bias.value() : nullptr;
  return ops::linear_forward(x, layer.weight.value(), bias, ctx.matmul);
}

// x [B, 1, d] at position `pos` of the block's level -> [B, 1, d].
Tensor attention_step(const Attention& attn, BlockCache& cache, const Tensor& x, int64_t pos,
                      const ForwardContext& ctx) {
  const int64_t B = x.size(0), H = attn.heads, D = attn.head_dim;
  const Shape split = {B, 1, H, D}, heads = {B, H, D}, merged = {B, 1, H * D};
  Tensor q = ops::rope_forward(linear(x, attn.q_proj, ctx).view(split), pos);
  Tensor k = ops::rope_forward(linear(x, attn.k_proj, ctx).view(split), pos);
  Tensor v = linear(x, attn.v_proj, ctx).view(split);
  Tensor o;
  if (attn.full) {
    IFLAME_CHECK(pos < cache.k.size(1), "decode: position ", pos, " is past the cache capacity ",
                 cache.k.size(1));
    cache.k.slice(1, pos, pos + 1).copy_from(k);
    cache.v.slice(1, pos, pos + 1).copy_from(v);
    o = cached_attention_step(q.view(heads), cache.k, cache.v, pos + 1,
                              1.0f / std::sqrt(static_cast<float>(D)))
            .view(merged);
  } else {
    o = ops::linear_attention_step(q.view(heads), k.view(heads), v.view(heads), cache.state, attn.slopes);
    o = rms_norm(o.view(merged), attn.rms_norm);
  }
  return linear(o, attn.out_proj, ctx);
}

Tensor block_step(const Block& block, BlockCache& cache, const Tensor& x, int64_t pos,
                  const ForwardContext& ctx) {
  Tensor h = ops::add(x, attention_step(block.attn, cache, rms_norm(x, block.norm1), pos, ctx));
  const FeedForward& ff = block.feed_forward;
  Tensor n = rms_norm(h, block.norm2);
  Tensor f = linear(ops::swiglu_forward(linear(n, ff.proj1, ctx), linear(n, ff.proj2, ctx)), ff.proj3, ctx);
  return ops::add(h, f);
}

Tensor stage_step(DecodeState& st, int s, Tensor x, int64_t pos) {
  const std::vector<Block>& blocks = st.model->stage(s);
  for (size_t i = 0; i < blocks.size(); i++) x = block_step(blocks[i], st.caches[s][i], x, pos, st.ctx);
  return x;
}

size_t bytes_of(const Tensor& t) { return t.defined() ? t.nbytes() : 0; }

}  // namespace

int stage_level(int stage) {
  static const int levels[IFlame::kStages] = {0, 1, 2, 2, 1, 0};
  return levels[stage];
}

size_t DecodeState::cache_bytes() const {
  size_t n = 0;
  for (const auto& stage : caches)
    for (const BlockCache& c : stage) n += bytes_of(c.k) + bytes_of(c.v) + bytes_of(c.state);
  for (const Tensor* t : {&group0, &group1, &skip0, &skip1, &out1, &out2, &zeros}) n += bytes_of(*t);
  return n;
}

DecodeState begin(const IFlame& model, int64_t batch, int64_t max_len, ForwardContext ctx) {
  IFLAME_CHECK(batch >= 1 && max_len >= 1, "decode: need batch >= 1 and max_len >= 1, got ", batch, " and ",
               max_len);
  const IFlameConfig& cfg = model.config();
  const Device dev = model.device();
  const int64_t d = cfg.dim, H = cfg.heads, D = cfg.head_dim();
  const int64_t capacity[3] = {max_len, (max_len + 2) / 3, (max_len + 8) / 9};
  DecodeState st;
  st.model = &model;
  st.ctx = ctx;
  st.batch = batch;
  st.max_len = max_len;
  for (int s = 0; s < IFlame::kStages; s++) {
    for (const Block& block : model.stage(s)) {
      BlockCache c;
      if (block.attn.full) {
        // Filled row by row before they are read: no need to clear.
        c.k = Tensor::empty({batch, capacity[stage_level(s)], H, D}, DType::F32, dev);
        c.v = Tensor::empty({batch, capacity[stage_level(s)], H, D}, DType::F32, dev);
      } else {
        c.state = Tensor::zeros({batch, H, D, D}, DType::F32, dev);
      }
      st.caches[s].push_back(c);
    }
  }
  st.group0 = Tensor::zeros({batch, 3, d}, DType::F32, dev);
  st.group1 = Tensor::zeros({batch, 3, d}, DType::F32, dev);
  st.zeros = Tensor::zeros({batch, 1, d}, DType::F32, dev);
  st.token_buffer = Tensor::zeros({batch, 1}, DType::I32, dev);
  return st;
}

Tensor step(DecodeState& st, const Tensor& tokens) {
  IFLAME_CHECK(st.model, "decode: step on a state that begin() did not make");
  IFLAME_CHECK(tokens.dtype() == DType::I32 && tokens.numel() == st.batch, "decode: tokens must be i32 [",
               st.batch, "], got ", tokens.describe());
  IFLAME_CHECK(st.pos < st.max_len, "decode: all ", st.max_len, " positions of the state are used");
  const IFlame& model = *st.model;
  const int64_t p = st.pos, B = st.batch;
  // Tokens already on the device are read in place; host tokens go through the
  // buffer (a host-to-device copy, which waits for the queue: the host sampler
  // has waited for the logits anyway).
  Tensor tok;
  if (tokens.device() == model.device()) {
    tok = tokens.contiguous().view({B, 1});
  } else {
    st.token_buffer.copy_from(tokens.contiguous().view({B, 1}));
    tok = st.token_buffer;
  }

  Tensor x = ops::embedding_forward(model.embedding().value(), tok, DType::F32);
  x = rms_norm(x, model.norm());
  x = stage_step(st, 0, x, p);
  st.skip0 = x;
  st.group0.slice(1, p % 3, p % 3 + 1).copy_from(x);
  if (p % 3 == 2) {
    const int64_t j = p / 3;
    Tensor y = stage_step(st, 1, ops::avg_pool3_forward(st.group0), j);
    st.skip1 = y;
    st.group1.slice(1, j % 3, j % 3 + 1).copy_from(y);
    if (j % 3 == 2) {
      const int64_t i = j / 3;
      Tensor z = stage_step(st, 2, ops::avg_pool3_forward(st.group1), i);
      st.out2 = stage_step(st, 3, z, i);
    }
    const Tensor& up2 = j >= 2 ? st.out2 : st.zeros;
    st.out1 = stage_step(st, 4, ops::skip_scale_add_forward(up2, model.skip_weights().value(), 0, st.skip1), j);
  }
  const Tensor& up1 = p >= 2 ? st.out1 : st.zeros;
  x = stage_step(st, 5, ops::skip_scale_add_forward(up1, model.skip_weights().value(), 1, st.skip0), p);
  st.pos++;
  return linear(x, model.output_proj(), st.ctx).view({B, model.config().vocab});
}

Tensor full_cached_logits(const IFlame& model, const Tensor& tokens, ForwardContext ctx) {
  IFLAME_CHECK(tokens.ndim() == 2 && tokens.dtype() == DType::I32, "tokens must be i32 [B, T], got ",
               tokens.describe());
  const int64_t B = tokens.size(0), T = tokens.size(1), V = model.config().vocab;
  Tensor host = tokens.to(Device::CPU).contiguous();
  Tensor out = Tensor::empty({B, T, V}, DType::F32, Device::CPU);
  DecodeState st = begin(model, B, T, ctx);
  for (int64_t t = 0; t < T; t++) {
    Tensor column = host.select(1, t).contiguous();
    out.select(1, t).copy_from(step(st, column).to(Device::CPU));
  }
  return out;
}

}  // namespace iflame::infer
