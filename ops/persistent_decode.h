// persistent_decode.h: one cached decoding step (infer/decode.h, spec §4) as a
// single cooperative kernel, for 1 to 8 sequences with bf16 weights and caches
// on the GPU.
//
// The layered step of infer/decode.cpp launches some 150 short kernels per
// position (norms, products, RoPE, attention, adds), each a few microseconds and
// most far from any hardware limit at batch 1. Here every thread block stays
// resident for the whole step (a cooperative launch sized from the occupancy
// calculator, so all blocks run at once) and walks the step's phases, with a
// grid-wide barrier between phases that depend on each other:
//   embedding + norm | per block: norm1 + q|k|v product | RoPE, cache write and
//   attention (softmax: rows split over blocks; linear: the state step) |
//   [attn_norm +] out_proj + residual | norm2 + proj1|proj2 + gate |
//   proj3 + bias + residual | the hourglass glue between levels | output_proj.
// Within a product phase each warp computes whole output rows (a bf16 weight row
// read once as 16-byte words, f32 sums, warp shuffles), as the small-batch
// products do (ops/cuda/small_product.cu), in the same order of summation.
//
// It reads and writes the layered decoder's own weights, caches, linear-attention
// states and hourglass buffers, so the two paths are interchangeable between
// steps and the layered one (whose every op has a CPU reference) is this one's
// reference: tests/test_persistent_decode.cpp compares them position by
// position. The rounding is the layered path's (x rounded to bf16 before each
// product, q/k/v of softmax attention stored in bf16, the linear-attention state
// updated without fused multiply-adds and read out in double); what differs is
// the order of a few f32 sums (the attention's split over blocks), so the logits
// agree to within the effects of bf16 rounding, not bit for bit.
// It ignores the decoder's liveness flags (DecodeState::row_live): dead rows'
// attention is computed like any other row's (at 1 to 8 rows the drain costs
// little), and nothing reads it, so the results are the same.
#pragma once
#include <array>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace iflame::ops {

constexpr int kPersistentMaxBatch = 8;
constexpr int64_t kPersistentShared = 48 * 1024;  // bytes of shared memory a block may use

// One transformer block as the layered decoder holds it (infer/decode.h's
// DecodeBlockWeights and BlockCache, nn/model_weights.h's norms and slopes).
struct PersistentBlock {
  bool full = false;                                 // softmax attention, else linear
  Tensor qkv, out, ff12, ff3;                        // bf16 [3HD, d], [d, HD], [2F', d], [d, F']
  Tensor ff12_bias, ff3_bias;                        // f32 [2F'], [d]
  Tensor norm1, norm2, attn_norm;                    // f32 [d], [d], [HD] (attn_norm: linear blocks)
  float norm1_eps = 1e-5f, norm2_eps = 1e-5f, attn_norm_eps = 1e-5f;
  std::vector<float> slopes;                         // linear blocks: one decay slope per head
  Tensor k_cache, v_cache;                           // softmax blocks: bf16 [B, capacity, H, 32]
  Tensor state;                                      // linear blocks: f32 [B, H, 32, 32]
};

// Everything a step reads and writes: the model and the decoding state's buffers.
struct PersistentDecodeModel {
  int64_t heads = 0;
  Tensor embedding, norm;  // f32 [V, d], [d]
  float norm_eps = 1e-5f;
  Tensor skip_weights;     // f32 [2]
  std::array<std::vector<PersistentBlock>, 6> stages;  // encoder_blocks.0 .. decoder_blocks.1 (levels 0 1 2 2 1 0)
  Tensor output, output_bias;                          // bf16 [V, d], f32 [V]
  Tensor position;         // i32 [1] or [B] (ops/decode_position.h)
  Tensor group0, group1;   // f32 [B, 3, d]
  Tensor skip0, skip1, out1, out2;  // f32 [B, 1, d]
  Tensor logits;           // f32 [B, V]
};

// Why the persistent step cannot run on `m` ("" when it can): not on a GPU, a
// GPU without cooperative launches, more than kPersistentMaxBatch rows, weights
// or caches not bf16, head width not 32, a block's staged rows above
// kPersistentShared, and the like.
std::string persistent_decode_unsupported(const PersistentDecodeModel& m);

namespace cuda {
struct PersistentPlan;  // the device-side description and scratch (ops/cuda/persistent_decode.cu)
std::string persistent_decode_device_problem();
std::shared_ptr<PersistentPlan> persistent_decode_prepare(const PersistentDecodeModel& m);
void persistent_decode_step(PersistentPlan& plan, const Tensor& tokens, int phase);
int persistent_decode_blocks(const PersistentPlan& plan);
}  // namespace cuda

// The step of one decoding state: made once (checks, then copies the pointers
// of every weight and buffer to the device), then one launch per position.
class PersistentDecode {
 public:
  explicit PersistentDecode(const PersistentDecodeModel& m);
  // Feeds tokens (i32 [B] on the GPU, trusted to be in the vocabulary) at every
  // row's position; phase 0 runs level 0 only (p % 3 != 2), 1 also level 1
  // (p % 3 == 2), 2 also the bottleneck (p % 9 == 8). Writes the logits and
  // advances the position counter, as the layered step does.
  void step(const Tensor& tokens, int phase);
  int blocks() const;  // thread blocks of the launch (all resident)

 private:
  std::shared_ptr<cuda::PersistentPlan> plan_;
};

}  // namespace iflame::ops
