// rope.cpp: RoPE frequencies, argument checks and device dispatch.
#include "ops/rope.h"

#include <cmath>

#include "core/profiler.h"
#include "ops/decode_position.h"
#include "ops/dispatch.h"
#include "ops/elem_checks.h"

namespace iflame::ops {

std::vector<float> rope_frequencies(int64_t head_dim) {
  IFLAME_CHECK(head_dim >= 8 && head_dim % 4 == 0, "rope: head dim must be a multiple of 4 and >= 8, got ",
               head_dim);
  const int64_t quarter = head_dim / 4;
  std::vector<float> freq(head_dim / 2, 0.0f);
  for (int64_t j = 0; j < quarter; j++) {
    const float exponent = float(j) / float(quarter - 1);  // float32 division, as PyTorch
    freq[j] = float(std::pow(1.0 / 1024.0, double(exponent)));
  }
  return freq;
}

namespace {
void check_rope_input(const Tensor& x, int64_t pos_offset, const char* op, const char* what) {
  IFLAME_CHECK(x.defined(), op, ": ", what, ": undefined tensor");
  detail::check_activation(x, op, what, x.device());
  IFLAME_CHECK(x.ndim() == 4, op, ": ", what, ": expected [B, T, H, D], got ", x.describe());
  IFLAME_CHECK(x.size(3) >= 8 && x.size(3) % 4 == 0, op, ": ", what,
               ": head dim D must be a multiple of 4 and >= 8, got ", x.describe());
  IFLAME_CHECK(pos_offset >= 0, op, ": pos_offset must be >= 0, got ", pos_offset);
  // Positions are converted to float32: exact only below 2^24.
  IFLAME_CHECK(pos_offset + x.size(1) <= (int64_t(1) << 24), op, ": positions up to ", pos_offset + x.size(1),
               " are not exact in float32");
}
}  // namespace

Tensor rope_forward(const Tensor& x, int64_t pos_offset) {
  check_rope_input(x, pos_offset, "rope_forward", "x");
  PROFILE_OP("rope_forward", 0, 2 * x.nbytes(), x.device(), DType::F32);  // reads x, writes y
  if (x.device() == Device::CPU) return cpu::rope_forward(x, pos_offset);
  CUDA_ONLY(return cuda::rope_forward(x, pos_offset));
}

Tensor rope_backward(const Tensor& grad_y, int64_t pos_offset) {
  check_rope_input(grad_y, pos_offset, "rope_backward", "grad_y");
  PROFILE_OP("rope_backward", 0, 2 * grad_y.nbytes(), grad_y.device(), DType::F32);  // reads grad_y, writes grad_x
  if (grad_y.device() == Device::CPU) return cpu::rope_backward(grad_y, pos_offset);
  CUDA_ONLY(return cuda::rope_backward(grad_y, pos_offset));
}

Tensor qkv_rope_step(const Tensor& qkv, int64_t heads, const Tensor& position, int64_t div, Tensor& k_dst,
                     Tensor& v_dst) {
  const char* op = "qkv_rope_step";
  IFLAME_CHECK(qkv.defined() && qkv.ndim() == 2 && heads >= 1 && qkv.size(1) % (3 * heads) == 0, op,
               ": qkv must be [B, 3*H*D] for ", heads, " heads, got ", qkv.describe());
  IFLAME_CHECK(qkv.dtype() == DType::F32 && qkv.is_contiguous(), op, ": qkv must be a contiguous f32 tensor, got ",
               qkv.describe());
  const int64_t B = qkv.size(0), HD = qkv.size(1) / 3, D = HD / heads;
  check_decode_position(op, position, div, qkv.device(), B);
  IFLAME_CHECK(D >= 8 && D % 4 == 0, op, ": head dim D must be a multiple of 4 and >= 8, got ", D);
  const bool to_cache = k_dst.ndim() == 4;
  for (const Tensor* dst : {&k_dst, &v_dst}) {
    IFLAME_CHECK(dst->defined() && dst->is_contiguous() && dst->device() == qkv.device() &&
                     dst->dtype() == k_dst.dtype() &&
                     (dst->dtype() == DType::F32 || (qkv.is_cuda() && dst->dtype() == DType::BF16)),
                 op, ": k/v destinations must be contiguous, of one dtype (f32, or bf16 on the GPU), on qkv's ",
                 "device; got ", dst->describe());
    const bool fits = to_cache ? dst->ndim() == 4 && dst->size(0) == B && dst->size(2) == heads && dst->size(3) == D
                               : dst->ndim() == 3 && dst->size(0) == B && dst->size(1) == heads && dst->size(2) == D;
    IFLAME_CHECK(fits, op, ": destination ", dst->describe(), " is neither [B, H, D] nor [B, capacity, H, D] for qkv ",
                 qkv.describe(), " and ", heads, " heads");
  }
  PROFILE_OP("qkv_rope_step", 0, 2 * qkv.nbytes(), qkv.device(), DType::F32);  // reads q|k|v, writes q, k, v
  if (qkv.is_cuda()) {
    CUDA_ONLY(return cuda::qkv_rope_step(qkv, heads, position, div, k_dst, v_dst));
  }
  const std::vector<int64_t> pos = level_positions(op, position, div, B);
  for (int64_t p : pos)
    IFLAME_CHECK(!to_cache || p < k_dst.size(1), op, ": position ", p, " is past the cache capacity ",
                 k_dst.size(1));
  return cpu::qkv_rope_step(qkv, heads, pos, k_dst, v_dst);
}

}  // namespace iflame::ops
