// persistent_decode.cpp: what the persistent decoding step accepts (see
// persistent_decode.h), checked on the host before anything is launched.
#include "ops/persistent_decode.h"

#include <cstdint>
#include <sstream>

#include "ops/dispatch.h"

namespace iflame::ops {

namespace {

bool aligned16(const Tensor& t) { return reinterpret_cast<uintptr_t>(t.raw_data()) % 16 == 0; }

std::string shape_string(const Shape& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); i++) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// "" when t is a defined, contiguous CUDA tensor of dtype and shape; else the
// problem. The kernel reads bf16 tensors (weights, caches) as 16-byte words:
// they must be 16-byte aligned too.
std::string tensor_problem(const char* name, const Tensor& t, DType dtype, const Shape& shape) {
  std::ostringstream s;
  if (!t.defined()) {
    s << name << " is missing";
  } else if (t.device() != Device::CUDA || t.dtype() != dtype || t.shape() != shape || !t.is_contiguous()) {
    s << name << " must be a contiguous " << dtype_name(dtype) << " tensor of shape " << shape_string(shape)
      << " on the GPU, got " << t.describe();
  } else if (dtype == DType::BF16 && !aligned16(t)) {
    s << name << " is not 16-byte aligned";
  }
  return s.str();
}

}  // namespace

std::string persistent_decode_unsupported(const PersistentDecodeModel& m) {
  if (!m.embedding.defined() || m.embedding.ndim() != 2) return "no embedding";
  if (m.embedding.device() != Device::CUDA) return "it needs a GPU";
  if (!m.logits.defined() || m.logits.ndim() != 2) return "no logits buffer";
  const int64_t V = m.embedding.size(0), d = m.embedding.size(1), B = m.logits.size(0), H = m.heads;
  const int64_t HD = H * 32;
  if (B < 1 || B > kPersistentMaxBatch)
    return "batch " + std::to_string(B) + " is above " + std::to_string(kPersistentMaxBatch);
  if (H < 1 || H > 32) return "it takes 1 to 32 heads, got " + std::to_string(H);
  if (d % 8 != 0) return "the width " + std::to_string(d) + " is not a multiple of 8";
  std::vector<std::string> problems = {
      tensor_problem("embedding", m.embedding, DType::F32, {V, d}),
      tensor_problem("norm", m.norm, DType::F32, {d}),
      tensor_problem("skip_weights", m.skip_weights, DType::F32, {2}),
      tensor_problem("output_proj", m.output, DType::BF16, {V, d}),
      tensor_problem("output_proj bias", m.output_bias, DType::F32, {V}),
      tensor_problem("group0", m.group0, DType::F32, {B, 3, d}),
      tensor_problem("group1", m.group1, DType::F32, {B, 3, d}),
      tensor_problem("skip0", m.skip0, DType::F32, {B, 1, d}),
      tensor_problem("skip1", m.skip1, DType::F32, {B, 1, d}),
      tensor_problem("out1", m.out1, DType::F32, {B, 1, d}),
      tensor_problem("out2", m.out2, DType::F32, {B, 1, d}),
      tensor_problem("logits", m.logits, DType::F32, {B, V}),
  };
  if (m.position.defined() && m.position.numel() == 1)
    problems.push_back(tensor_problem("position", m.position, DType::I32, {1}));
  else
    problems.push_back(tensor_problem("position", m.position, DType::I32, {B}));
  int64_t widest = d > HD ? d : HD;
  for (int s = 0; s < 6; s++)
    for (const PersistentBlock& blk : m.stages[s]) {
      if (!blk.ff12.defined() || blk.ff12.ndim() != 2) return "a block has no feed-forward weights";
      const int64_t Fp = blk.ff12.size(0) / 2;
      if (Fp % 8 != 0) return "the padded feed-forward width " + std::to_string(Fp) + " is not a multiple of 8";
      widest = Fp > widest ? Fp : widest;
      problems.push_back(tensor_problem("qkv", blk.qkv, DType::BF16, {3 * HD, d}));
      problems.push_back(tensor_problem("out_proj", blk.out, DType::BF16, {d, HD}));
      problems.push_back(tensor_problem("proj1|proj2", blk.ff12, DType::BF16, {2 * Fp, d}));
      problems.push_back(tensor_problem("proj1|proj2 bias", blk.ff12_bias, DType::F32, {2 * Fp}));
      problems.push_back(tensor_problem("proj3", blk.ff3, DType::BF16, {d, Fp}));
      problems.push_back(tensor_problem("proj3 bias", blk.ff3_bias, DType::F32, {d}));
      problems.push_back(tensor_problem("norm1", blk.norm1, DType::F32, {d}));
      problems.push_back(tensor_problem("norm2", blk.norm2, DType::F32, {d}));
      if (blk.full) {
        if (!blk.k_cache.defined() || blk.k_cache.ndim() != 4) return "a softmax block has no K cache";
        const int64_t capacity = blk.k_cache.size(1);
        problems.push_back(tensor_problem("K cache", blk.k_cache, DType::BF16, {B, capacity, H, 32}));
        problems.push_back(tensor_problem("V cache", blk.v_cache, DType::BF16, {B, capacity, H, 32}));
      } else {
        if (static_cast<int64_t>(blk.slopes.size()) != H) return "a linear block's slopes are not one per head";
        problems.push_back(tensor_problem("attn_norm", blk.attn_norm, DType::F32, {HD}));
        problems.push_back(tensor_problem("linear-attention state", blk.state, DType::F32, {B, H, 32, 32}));
      }
    }
  for (const std::string& p : problems)
    if (!p.empty()) return p;
  // A product phase stages its B input rows as f32 in shared memory.
  if (B * widest * int64_t(sizeof(float)) > kPersistentShared)
    return std::to_string(B) + " rows of " + std::to_string(widest) + " do not fit the shared memory of a block";
#ifdef IFLAME_CUDA
  return cuda::persistent_decode_device_problem();
#else
  return "this build has no CUDA support";
#endif
}

PersistentDecode::PersistentDecode(const PersistentDecodeModel& m) {
  const std::string problem = persistent_decode_unsupported(m);
  IFLAME_CHECK(problem.empty(), "persistent decoding step: ", problem);
  CUDA_ONLY(plan_ = cuda::persistent_decode_prepare(m));
}

void PersistentDecode::step(const Tensor& tokens, int phase) {
  IFLAME_CHECK(phase >= 0 && phase <= 2, "persistent decoding step: phase must be 0, 1 or 2, got ", phase);
  IFLAME_CHECK(tokens.dtype() == DType::I32 && tokens.device() == Device::CUDA && tokens.is_contiguous(),
               "persistent decoding step: tokens must be contiguous i32 on the GPU, got ", tokens.describe());
  CUDA_ONLY(cuda::persistent_decode_step(*plan_, tokens, phase));
}

int PersistentDecode::blocks() const {
  CUDA_ONLY(return cuda::persistent_decode_blocks(*plan_));
}

}  // namespace iflame::ops
