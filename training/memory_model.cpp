// memory_model.cpp: the estimate of memory_model.h, term by term.
#include "training/memory_model.h"

#include <algorithm>
#include <cstdio>

#include "core/tokens.h"
#include "nn/iflame.h"

namespace iflame {

namespace {
// Bytes a block keeps for backward over `rows` rows (see memory_model.h): x and
// h are the f32 residual stream, the rest is in the block's activation dtype (a bytes).
double block_saved_bytes(const IFlameConfig& c, bool full, double rows, double a, double ffn, Recompute recompute) {
  const double d = c.dim;
  if (recompute == Recompute::Blocks) return 4 * rows * d;
  // ffn: the feed-forward keeps only its input (norm2's output, counted in the
  // d terms); its three hidden-width tensors are rebuilt in its backward.
  const double hidden = recompute == Recompute::Ffn ? 0 : 3 * ffn;
  if (full) return 4 * rows * 2 * d + a * rows * (6 * d + hidden) + 4 * rows * 2 + 4 * rows * c.heads;
  return 4 * rows * 2 * d + a * rows * (7 * d + hidden) + 4 * rows * 3;
}
}  // namespace

MemoryEstimate estimate_training_memory(const IFlameConfig& c, int64_t batch, int64_t length, DType activations,
                                        Recompute recompute) {
  ForwardContext ctx;
  ctx.activations = activations;
  ctx.recompute = recompute;
  return estimate_training_memory(c, batch, length, ctx);
}

MemoryEstimate estimate_training_memory(const IFlameConfig& c, int64_t batch, int64_t length,
                                        const ForwardContext& ctx) {
  MemoryEstimate e;
  const DType activations = ctx.activations;
  const Recompute recompute = ctx.recompute;
  const int align = ctx.ffn_align > 1 ? ctx.ffn_align : 1;
  const double d = c.dim, V = c.vocab;
  const double ffn = double((c.hidden() + align - 1) / align * align);  // the padded width the products run at
  // Parameters, as IFlame registers them (nn/iflame.cpp, nn/layers.cpp).
  const int64_t blocks = c.total_blocks();
  const int64_t full_blocks = blocks / c.full_attention_every;
  const int64_t muon = int64_t(c.vocab) * c.dim                                     // embedding
                       + blocks * (4 * int64_t(c.dim) * c.dim + 3 * int64_t(c.dim) * c.hidden());
  const int64_t adamw = 2                                                          // skip_weights2
                        + blocks * (2 * int64_t(c.hidden()) + c.dim + 2 * c.dim)   // FFN biases, norm1/2
                        + (blocks - full_blocks) * c.dim                           // attn.rms_norm
                        + int64_t(c.vocab) * c.dim + c.vocab + c.dim;              // output_proj, norm
  e.parameters = muon + adamw;
  e.parameter_bytes = 4.0 * e.parameters;
  e.gradient_bytes = 4.0 * e.parameters;
  e.optimizer_bytes = 4.0 * muon + 8.0 * adamw;

  // Activations.
  const double a = dtype_size(activations);
  const int64_t T = (length + kTokensPerFace - 1) / kTokensPerFace * kTokensPerFace;
  const double B = batch, R0 = B * T, R1 = B * (T / 3);
  const int64_t level_length[IFlame::kStages] = {T, T / 3, T / 9, T / 9, T / 3, T};
  double saved = 0, largest_block = 0;
  int block_number = 0;
  for (int s = 0; s < IFlame::kStages; s++) {
    for (int i = 0; i < c.blocks_per_stage; i++) {
      const bool full = ++block_number % c.full_attention_every == 0;
      const double rows = B * level_length[s];
      saved += block_saved_bytes(c, full, rows, a, ffn, IFlame::block_recompute(ctx, s, i, c.blocks_per_stage));
      largest_block =
          std::max(largest_block, block_saved_bytes(c, full, rows, a, ffn, Recompute::None) - 4 * rows * d);
    }
  }
  // Outside the blocks everything is the f32 residual stream, whatever ctx.activations says.
  saved += 4 * R0;                // token ids (embedding)
  saved += 4 * R0 * d + 4 * R0;   // embedding output and inverse RMS (norm)
  saved += 4 * (R1 + R0) * d;     // up-sampled tensors (skip_scale_add, twice)
  saved += 4 * R0 * d;            // decoder_blocks.1 output (output_proj)
  saved += 4 * R0 * V + 4 * R0 + 4 * R0 + 3 * 4;  // logits, targets, log-sum-exp, loss/accuracy/count
  e.saved_bytes = saved;
  // The largest thing rebuilt at once: a block, or a full-length block's
  // feed-forward (ffn:K with K >= 1 includes one: rank 0 is full length).
  const bool rebuilds_ffn = recompute == Recompute::Ffn && ctx.ffn_recompute_blocks != 0;
  e.recompute_bytes = recompute == Recompute::Blocks ? largest_block : rebuilds_ffn ? a * R0 * 3 * ffn : 0;
  e.transient_bytes = 4 * R0 * d + a * R0 * 2 * ffn;  // the block output's gradient (f32), SwiGLU's two
  return e;
}

std::string describe_memory(const std::vector<std::pair<std::string, MemoryEstimate>>& columns,
                            const std::string& indent) {
  // GiB, or MiB when every total is below one GiB (the small models).
  double largest = 0;
  for (const auto& col : columns) largest = std::max(largest, col.second.total());
  const bool in_gib = largest >= double(1ull << 30);
  const double unit = in_gib ? double(1ull << 30) : double(1ull << 20);
  const char* unit_name = in_gib ? "GiB" : "MiB";
  struct Row {
    const char* name;
    double MemoryEstimate::*field;
  };
  const Row rows[] = {{"parameters (f32)", &MemoryEstimate::parameter_bytes},
                      {"gradients (f32)", &MemoryEstimate::gradient_bytes},
                      {"optimizer state", &MemoryEstimate::optimizer_bytes},
                      {"saved activations", &MemoryEstimate::saved_bytes},
                      {"recomputed block", &MemoryEstimate::recompute_bytes},
                      {"backward transient", &MemoryEstimate::transient_bytes}};
  char buf[64];
  std::string out = indent + std::string(20, ' ');
  for (const auto& col : columns) {
    std::snprintf(buf, sizeof buf, " %12s", col.first.c_str());
    out += buf;
  }
  out += "\n";
  for (const Row& r : rows) {
    std::snprintf(buf, sizeof buf, "%-20s", r.name);
    out += indent + buf;
    for (const auto& col : columns) {
      std::snprintf(buf, sizeof buf, " %8.2f %s", col.second.*r.field / unit, unit_name);
      out += buf;
    }
    out += "\n";
  }
  std::snprintf(buf, sizeof buf, "%-20s", "total");
  out += indent + buf;
  for (const auto& col : columns) {
    std::snprintf(buf, sizeof buf, " %8.2f %s", col.second.total() / unit, unit_name);
    out += buf;
  }
  return out + "\n";
}

}  // namespace iflame
