// decode.h: cached decoding of the iFlame hourglass (spec §4), one level-0
// position per step for B sequences in lockstep, with no tape.
//
// At level-0 position p (RoPE position = the index at each level):
//   x = norm(embed(token p));  encoder_blocks.0 at p            -> skip0[p]
//   if p % 3 == 2 (j = p / 3):  mean of the 3 level-0 encoder outputs,
//       encoder_blocks.1 at j                                    -> skip1[j]
//       if p % 9 == 8 (i = p / 9): mean of the 3 level-1 encoder outputs,
//           bottlenecke, bottleneckd at i                        -> out2[i]
//       decoder_blocks.0 at j on sw[0] * up2[j] + skip1[j]       -> out1[j]
//         with up2[j] = out2[(j - 2) / 3] for j >= 2, else 0
//   decoder_blocks.1 at p on sw[1] * up1[p] + skip0[p]
//     with up1[p] = out1[(p - 2) / 3] for p >= 2, else 0;  output_proj -> logits [B, V]
// These are the full forward's repeat3_shift2 relations: out2[(j-2)/3] is the most
// recent level-2 output at every j >= 2 (for j = 3i+2 it is computed in the same
// step), and likewise out1[(p-2)/3] is the most recent level-1 decoder output.
//
// State per block: full attention keeps K (after RoPE) and V caches
// [B, capacity of its level, H, D]; linear attention keeps its f32 state
// [B, H, D, D]. Everything lives on the model's device, so the same code runs
// on the CPU and the GPU.
//
// Made for CUDA graphs. No kernel argument depends on the position: kernels
// read it from device counters (`position`, one per row, advanced at the end of
// every step; ops/decode_position.h), and everything that outlives a step lives in
// buffers allocated by begin() and written in place (the hourglass buffers,
// the caches, the logits). The zero-initialised out1/out2 buffers stand for
// the up-sampled input before the first coarse output exists, exactly the
// zeros of the full pass's shift. So the device work of a step depends only on
// the phase p mod 9 (which levels run), and each of the three phases can be
// captured once and replayed (DecodeGraphs below). Per block the step runs:
// RMSNorm, one product for q|k|v, RoPE + cache write, attention, the output
// product, residual add + RMSNorm in one kernel, one product for proj1|proj2,
// the gate, proj3, and the residual add fused with the next block's RMSNorm.
//
// The persistent step (ops/persistent_decode.h) does the same work on the same
// weights and state as ONE cooperative kernel per position, for 1 to 8 rows
// with bf16 products on the GPU: begin() makes it when asked (DecodeStep), and
// step() and DecodeGraphs then launch it instead of the layered kernels.
#pragma once
#include <array>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "nn/forward_context.h"
#include "nn/model_weights.h"
#include "ops/persistent_decode.h"

namespace iflame::infer {

struct BlockCache {
  Tensor k, v;    // full attention: [B, capacity, H, D]; bf16 with bf16 products on the GPU, else f32
  Tensor state;   // linear attention: f32 [B, H, D, D]
};

// A block's weights as the step uses them: q|k|v as one [3*H*D, d] matrix,
// proj1|proj2 as one [2F', d] with its bias and proj3 as [d, F'], the hidden
// width F padded to F' (a multiple of 8) with zeros; f32, or bf16 on the GPU
// when the products are bf16 (converted once here rather than at every product).
struct DecodeBlockWeights {
  Tensor qkv, out, ff12, ff12_bias, ff3, ff3_bias;
};
struct DecodeWeights {
  DType matmul = DType::F32;
  std::array<std::vector<DecodeBlockWeights>, ModelWeights::kStages> blocks;
  Tensor output, output_bias;
};
std::shared_ptr<const DecodeWeights> prepare_decode_weights(const ModelWeights& model, DType matmul);

// Which kernels run a step: the layered ones (the reference, any batch,
// precision and device), the persistent kernel (batch <= 8, bf16 products, a
// GPU with cooperative launches; begin() fails where it cannot run), or Auto:
// persistent where it can run, else layered.
enum class DecodeStep { Layered, Persistent, Auto };
const char* decode_step_name(DecodeStep s);  // "layered", "persistent", "auto"

struct DecodeState {
  std::shared_ptr<const ModelWeights> model;  // the model's weights (nn/model_weights.h), as read
  std::shared_ptr<const DecodeWeights> weights;
  ForwardContext ctx;
  int64_t batch = 0;
  int64_t max_len = 0;  // level-0 positions that fit
  int64_t pos = 0;      // the next level-0 position to feed (host copy of `position`)
  std::array<std::vector<BlockCache>, ModelWeights::kStages> caches;
  Tensor position;        // i32 [B] on the device: the position each row's next step works at
  // Continuous batching (infer/generate.h): when set (i32 [B] on the device,
  // written by the sampler), each step begins by starting the flagged rows over
  // at position 0: their position, linear-attention states and coarse outputs
  // (out1, out2) are zeroed on the device (ops/decode_position.h's
  // zero_flagged_rows; their K/V cache rows and group slots are rewritten
  // before they are read). Rows must start over only at a position that is
  // 0 mod 9 for all the others, so every row stays in the step's phase; the
  // steps then go on past max_len, each row within it.
  Tensor row_resets;
  // Optional too (i32 [B] on the device, written by the sampler after every
  // step: DeviceSampler::live): rows flagged 0 are dead, their sample done or
  // none left to take. The step's full-attention blocks skip them: a dead row
  // reads none of its K/V cache and its attention output is zeros
  // (ops/cached_attention.h), which saves the drain of a run reading every
  // finished row's whole cache at every step. Safe because nothing of a dead
  // row's step is ever read: its logits are not drawn from, and when it takes
  // a new sample it starts over at position 0 with its position, states and
  // coarse outputs zeroed (row_resets) and each K/V cache row and group slot
  // rewritten before it is read. The linear-attention blocks and the products
  // still run for every row (cheap at any position), and the persistent step
  // ignores the flags (it computes every row).
  Tensor row_live;
  // Hourglass buffers, [B, 3, d] or [B, 1, d].
  Tensor group0, group1;  // encoder outputs of the current group of 3, levels 0 and 1
  Tensor skip0, skip1;    // encoder outputs at the current level-0 / level-1 position
  Tensor out1, out2;      // latest decoder_blocks.0 output, latest bottleneck output (zeros before)
  Tensor logits;          // f32 [B, V]: the last step's output
  Tensor token_buffer;    // i32 [B, 1] on the device, for tokens handed in from the host
  std::shared_ptr<ops::PersistentDecode> persistent;  // set: steps run the persistent kernel
  DecodeStep requested_step = DecodeStep::Layered;   // what begin() was asked for (compact_rows asks again)
  std::string persistent_problem;  // with DecodeStep::Auto: why the persistent step could not run

  // "persistent" or "layered": the kernels this state's steps run.
  const char* step_path() const { return persistent ? "persistent" : "layered"; }

  // Bytes held by caches, states and buffers (what a longer max_len grows).
  size_t cache_bytes() const;
};

// The level (0, 1, 2) each stage runs at: encoder_blocks.0 .. decoder_blocks.1.
int stage_level(int stage);

// A fresh state for `batch` sequences of at most max_len tokens, with its
// weights prepared for ctx.matmul, stepped by the kernels `path` names. An
// IFlame converts to its ModelWeights.
DecodeState begin(const ModelWeights& model, int64_t batch, int64_t max_len, ForwardContext ctx = {},
                  DecodeStep path = DecodeStep::Layered);

// The drain of a sampling run (infer/generate.h): a fresh state of keep.size()
// rows whose row i continues `from`'s row keep[i] exactly: its K/V cache rows,
// linear-attention states, hourglass buffers (group0, group1, skip0, skip1,
// out1, out2, logits) and position are copied on the device (infer/row_gather.h).
// The same weights (not prepared again), capacity, precision and host position
// (so the phase p mod 9 goes on), and the step kernels begin() picks for the
// same DecodeStep at the new batch (Auto may turn persistent at <= 8 rows).
// row_resets and row_live are left unset: the caller points them at its
// sampler's compacted flags. keep: distinct rows of `from`, at least one, in
// any order. Graphs made for `from` (DecodeGraphs) do not fit the new state.
DecodeState compact_rows(const DecodeState& from, const std::vector<int>& keep);

// Feeds token `pos` of every sequence (i32 [B] on the CPU or the model's device;
// tokens are trusted to lie in the vocabulary) and returns the logits predicting
// token pos + 1: state.logits, f32 [B, V] on the model's device, overwritten by
// the next step. Queues the work and returns; device tokens are read when the
// work runs.
Tensor step(DecodeState& state, const Tensor& tokens);

// Replays step() from CUDA graphs: one graph per phase of the position, captured
// the second time that phase is met (the first runs plainly, so lazy
// initialisation happens outside a capture), together with whatever `after` queues (the
// sampler, say), which must itself be graph-safe: no host syncs, no position in
// its kernel arguments, its outputs in buffers that outlive the step. Tokens must
// stay in one device buffer. On the CPU, and for a state with the persistent
// step (already one launch per position), it simply calls step() and `after`.
class DecodeGraphs {
 public:
  DecodeGraphs() = default;
  ~DecodeGraphs();
  DecodeGraphs(const DecodeGraphs&) = delete;
  DecodeGraphs& operator=(const DecodeGraphs&) = delete;

  void step(DecodeState& state, const Tensor& device_tokens, const std::function<void()>& after);
  int graphs_captured() const;

 private:
  int pool_ = 0;                   // the graphs' private memory pool (core/allocator.h)
  std::array<void*, 3> exec_{};    // cudaGraphExec_t per phase
  std::array<bool, 3> ran_eagerly_{};  // a phase's first step runs without a graph
  const DecodeState* state_ = nullptr;  // the state whose buffers the graphs use
  const void* tokens_ = nullptr;   // the token buffer they read
};

// step() for every position of tokens (i32 [B, T], host): logits f32 [B, T, V] on the CPU.
Tensor full_cached_logits(const ModelWeights& model, const Tensor& tokens, ForwardContext ctx = {});

}  // namespace iflame::infer
