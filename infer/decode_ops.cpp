// decode_ops.cpp: argument checks, dispatch, and the CPU versions of the
// decoding kernels (see decode_ops.h): compositions of the training ops' CPU
// references, so the CPU decoding step computes exactly what it computed
// before these kernels existed.
#include "infer/decode_ops.h"

#include <algorithm>

#include "core/profiler.h"
#include "infer/cached_attention.h"
#include "ops/dispatch.h"
#include "ops/elementwise.h"
#include "ops/linear.h"
#include "ops/rms_norm.h"
#include "ops/rope.h"
#include "ops/swiglu.h"

namespace iflame::infer {

namespace {

// The positions of the rows, read from the counter (already checked by
// check_position): one shared by every row, or one per row.
std::vector<int64_t> row_positions(const char* op, const Tensor& position) {
  std::vector<int64_t> p;
  for (int32_t v : position.to(Device::CPU).to_ints()) {
    IFLAME_CHECK(v >= 0, op, ": negative position ", v);
    p.push_back(v);
  }
  return p;
}

// The position a block at level div works at, when every row is at one position.
int64_t level_position(const char* op, const Tensor& position, int64_t div) {
  return row_positions(op, position)[0] / div;
}

// Whether every row is at one position (then the ops run batched as before).
bool shared_position(const char* op, const Tensor& position) {
  const std::vector<int64_t> p = row_positions(op, position);
  return std::all_of(p.begin(), p.end(), [&](int64_t v) { return v == p[0]; });
}

// Row b's position, as the i32 [1] counter the ops take.
Tensor row_position(const Tensor& position, int64_t b) {
  return position.numel() == 1 ? position : position.slice(0, b, b + 1).contiguous();
}

void check_position(const char* op, const Tensor& position, int64_t div, Device device, int64_t batch) {
  IFLAME_CHECK(position.defined() && position.dtype() == DType::I32 &&
                   (position.numel() == 1 || position.numel() == batch) && position.ndim() == 1 &&
                   position.device() == device,
               op, ": position must be an i32 [1] or [", batch, "] tensor on the data's device, got ",
               position.describe());
  IFLAME_CHECK(div == 1 || div == 3 || div == 9, op, ": div must be 1, 3 or 9, got ", div);
}

void check_f32_contiguous(const char* op, const char* what, const Tensor& t, Device device) {
  IFLAME_CHECK(t.defined() && t.dtype() == DType::F32 && t.is_contiguous() && t.device() == device, op, ": ",
               what, " must be a contiguous f32 tensor on ", device_name(device), ", got ", t.describe());
}

}  // namespace

Tensor qkv_rope_step(const Tensor& qkv, int64_t heads, const Tensor& position, int64_t div, Tensor& k_dst,
                     Tensor& v_dst) {
  const char* op = "qkv_rope_step";
  IFLAME_CHECK(qkv.defined() && qkv.ndim() == 2 && heads >= 1 && qkv.size(1) % (3 * heads) == 0, op,
               ": qkv must be [B, 3*H*D] for ", heads, " heads, got ", qkv.describe());
  check_f32_contiguous(op, "qkv", qkv, qkv.device());
  const int64_t B = qkv.size(0), HD = qkv.size(1) / 3, D = HD / heads;
  check_position(op, position, div, qkv.device(), B);
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
  if (!shared_position(op, position)) {  // rows at different positions: one row at a time
    Tensor q = Tensor::empty({B, heads, D}, DType::F32, Device::CPU);
    for (int64_t b = 0; b < B; b++) {
      Tensor k_row = k_dst.slice(0, b, b + 1), v_row = v_dst.slice(0, b, b + 1);
      q.slice(0, b, b + 1).copy_from(qkv_rope_step(qkv.slice(0, b, b + 1).contiguous(), heads,
                                                   row_position(position, b), div, k_row, v_row));
    }
    return q;
  }
  const int64_t pos = level_position(op, position, div);
  const Shape split = {B, 1, heads, D};
  Tensor q = ops::rope_forward(qkv.slice(1, 0, HD).contiguous().view(split), pos).view({B, heads, D});
  Tensor k = ops::rope_forward(qkv.slice(1, HD, 2 * HD).contiguous().view(split), pos);
  Tensor v = qkv.slice(1, 2 * HD, 3 * HD).contiguous().view(split);
  if (to_cache) {
    IFLAME_CHECK(pos < k_dst.size(1), op, ": position ", pos, " is past the cache capacity ", k_dst.size(1));
    k_dst.slice(1, pos, pos + 1).copy_from(k);
    v_dst.slice(1, pos, pos + 1).copy_from(v);
  } else {
    k_dst.copy_from(k.view(k_dst.shape()));
    v_dst.copy_from(v.view(v_dst.shape()));
  }
  return q;
}

Tensor cached_attention_at(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                           const Tensor& position, int64_t div, float scale, int64_t host_length) {
  const char* op = "cached_attention_at";
  check_cached_attention(op, q, k_cache, v_cache);
  check_position(op, position, div, q.device(), q.size(0));
  PROFILE_OP("cached_attention_at", host_length > 0 ? cached_attention_flops(q, host_length) : 0,
             host_length > 0 ? cached_attention_bytes(q, k_cache, host_length) : 0, q.device(), q.dtype());
  if (q.is_cuda()) {
    // The length is read on the device; the kernel bounds it by the capacity.
    CUDA_ONLY(return cuda::cached_attention_at(q, k_cache, v_cache, position, div, scale));
  }
  if (!shared_position(op, position)) {  // rows at different positions: one row at a time
    Tensor o = Tensor::empty(q.shape(), DType::F32, Device::CPU);
    for (int64_t b = 0; b < q.size(0); b++)
      o.slice(0, b, b + 1).copy_from(cached_attention_step(
          q.slice(0, b, b + 1), k_cache.slice(0, b, b + 1), v_cache.slice(0, b, b + 1),
          level_position(op, row_position(position, b), div) + 1, scale));
    return o;
  }
  return cached_attention_step(q, k_cache, v_cache, level_position(op, position, div) + 1, scale);
}

Tensor swiglu_pair(const Tensor& ab) {
  const char* op = "swiglu_pair";
  IFLAME_CHECK(ab.defined() && ab.ndim() >= 1 && ab.size(-1) % 2 == 0, op,
               ": needs an even last dimension, got ", ab.describe());
  check_f32_contiguous(op, "ab", ab, ab.device());
  PROFILE_OP("swiglu_pair", 0, 3 * ab.nbytes() / 2, ab.device(), DType::F32);  // reads a|b, writes y (half)
  if (ab.is_cuda()) {
    CUDA_ONLY(return cuda::swiglu_pair(ab));
  }
  const int64_t F = ab.size(-1) / 2, last = ab.ndim() - 1;
  return ops::swiglu_forward(ab.slice(int(last), 0, F).contiguous(), ab.slice(int(last), F, 2 * F).contiguous());
}

void add_rms_norm(const Tensor& x, const Tensor& y, const Tensor& weight, float eps, Tensor& h, Tensor& n) {
  const char* op = "add_rms_norm";
  check_f32_contiguous(op, "x", x, x.device());
  check_f32_contiguous(op, "y", y, x.device());
  IFLAME_CHECK(x.shape() == y.shape(), op, ": x ", x.describe(), " and y ", y.describe(), " differ");
  IFLAME_CHECK(weight.defined() && weight.ndim() == 1 && weight.size(0) == x.size(-1) &&
                   weight.dtype() == DType::F32 && weight.device() == x.device(),
               op, ": weight must be f32 [", x.size(-1), "] on x's device, got ", weight.describe());
  // Reads x, y, weight; writes h, n.
  PROFILE_OP("add_rms_norm", 0, 4 * x.nbytes() + weight.nbytes(), x.device(), DType::F32);
  if (x.is_cuda()) {
    CUDA_ONLY(cuda::add_rms_norm(x, y, weight, eps, h, n); return);
  }
  h = ops::add(x, y);
  Tensor inv_rms;
  n = ops::rms_norm_forward(h, weight, eps, inv_rms);
}

void write_group_slot(Tensor& group, const Tensor& x, const Tensor& position, int64_t div) {
  const char* op = "write_group_slot";
  check_f32_contiguous(op, "group", group, group.device());
  check_f32_contiguous(op, "x", x, group.device());
  IFLAME_CHECK(group.ndim() == 3 && group.size(1) == 3 && x.numel() == group.size(0) * group.size(2), op,
               ": group must be [B, 3, d] and x [B, 1, d]; got ", group.describe(), " and ", x.describe());
  check_position(op, position, div, group.device(), group.size(0));
  PROFILE_OP("write_group_slot", 0, 2 * x.nbytes(), group.device(), DType::F32);  // reads x, writes one slot
  if (group.is_cuda()) {
    CUDA_ONLY(cuda::write_group_slot(group, x, position, div); return);
  }
  const Tensor rows = x.view({group.size(0), 1, group.size(2)});
  const std::vector<int64_t> p = row_positions(op, position);
  for (int64_t b = 0; b < group.size(0); b++) {
    const int64_t slot = p[p.size() == 1 ? 0 : b] / div % 3;
    group.slice(0, b, b + 1).slice(1, slot, slot + 1).copy_from(rows.slice(0, b, b + 1));
  }
}

namespace {
// Which one-kernel GPU path takes a product, if any (decode_ops.h).
enum class SmallPath { None, Gemv, Mma };

bool aligned16(const Tensor& t) { return reinterpret_cast<uintptr_t>(t.raw_data()) % 16 == 0; }

SmallPath small_batch_path(const Tensor& x, const Tensor& w, DType compute, bool swiglu) {
  const int64_t K = w.size(1), rows = K > 0 ? x.numel() / K : 0;
  // Both kernels read W's rows as 16-byte words.
  if (!(x.is_cuda() && compute == DType::BF16 && w.dtype() == DType::BF16 && x.dtype() == DType::F32 &&
        x.is_contiguous() && w.is_contiguous() && rows >= 1 && K % 8 == 0 && aligned16(w)))
    return SmallPath::None;
  // The GEMV stages x (rows x K f32) in at most 48 KiB of shared memory.
  if (rows <= kSmallBatch)
    return rows * K * int64_t(sizeof(float)) <= kSmallBatchShared ? SmallPath::Gemv : SmallPath::None;
#ifdef IFLAME_CUDA
  // The tensor-core kernel reads x as 16-byte words too; its shared memory
  // grows with the rows and with a block's slice of K (about K / 8).
  if (rows <= kSmallBatchMma && aligned16(x)) {
    const int64_t shared = cuda::small_batch_mma_shared(rows, K, swiglu);
    if (shared > 0 && shared <= kSmallBatchMmaShared) return SmallPath::Mma;
  }
#endif
  return SmallPath::None;
}
void check_product(const char* op, const Tensor& x, const Tensor& w, const Tensor& bias) {
  IFLAME_CHECK(w.defined() && w.ndim() == 2 && x.defined() && x.size(-1) == w.size(1), op, ": x ", x.describe(),
               " does not fit the weight ", w.describe());
  IFLAME_CHECK(!bias.defined() || (bias.ndim() == 1 && bias.size(0) == w.size(0)), op, ": bias ", bias.describe(),
               " does not fit the weight ", w.describe());
}
}  // namespace

Tensor decode_product(const Tensor& x, const Tensor& w, const Tensor& bias, DType compute) {
  check_product("decode_product", x, w, bias);
  const SmallPath path = small_batch_path(x, w, compute, false);
  if (path != SmallPath::None) {
    Shape shape = x.shape();
    shape.back() = w.size(0);
    CUDA_ONLY(return (path == SmallPath::Gemv ? cuda::small_batch_product(x, w, bias, false)
                                              : cuda::small_batch_product_mma(x, w, bias, false))
                  .view(shape));
  }
  return ops::linear_forward(x, w, bias.defined() ? &bias : nullptr, compute);
}

Tensor decode_product_swiglu(const Tensor& x, const Tensor& w12, const Tensor& b12, DType compute) {
  check_product("decode_product_swiglu", x, w12, b12);
  IFLAME_CHECK(w12.size(0) % 2 == 0, "decode_product_swiglu: the weight must stack two halves, got ",
               w12.describe());
  const SmallPath path = small_batch_path(x, w12, compute, true);
  if (path != SmallPath::None) {
    Shape shape = x.shape();
    shape.back() = w12.size(0) / 2;
    CUDA_ONLY(return (path == SmallPath::Gemv ? cuda::small_batch_product(x, w12, b12, true)
                                              : cuda::small_batch_product_mma(x, w12, b12, true))
                  .view(shape));
  }
  return swiglu_pair(ops::linear_forward(x, w12, b12.defined() ? &b12 : nullptr, compute));
}

void advance_position(Tensor& position) {
  IFLAME_CHECK(position.defined() && position.dtype() == DType::I32 && position.ndim() == 1 &&
                   position.is_contiguous(),
               "advance_position: position must be a contiguous i32 [n] tensor, got ", position.describe());
  PROFILE_OP("advance_position", 0, 8 * position.numel(), position.device(), DType::F32);  // reads and writes n i32
  if (position.is_cuda()) {
    CUDA_ONLY(cuda::advance_position(position); return);
  }
  for (int64_t i = 0; i < position.numel(); i++) position.data<int32_t>()[i]++;
}

void zero_flagged_rows(const std::vector<Tensor>& tensors, const Tensor& flags) {
  const char* op = "zero_flagged_rows";
  IFLAME_CHECK(flags.defined() && flags.dtype() == DType::I32 && flags.ndim() == 1 && flags.is_contiguous(), op,
               ": flags must be a contiguous i32 [B] tensor, got ", flags.describe());
  const int64_t B = flags.numel();
  IFLAME_CHECK(tensors.size() <= size_t(kMaxZeroedTensors), op, ": at most ", kMaxZeroedTensors, " tensors, got ",
               tensors.size());
  double bytes = double(flags.nbytes());
  for (const Tensor& t : tensors) {
    IFLAME_CHECK(t.defined() && t.is_contiguous() && t.ndim() >= 1 && t.size(0) == B && dtype_size(t.dtype()) == 4 &&
                     t.device() == flags.device(),
                 op, ": each tensor must be contiguous, of 4-byte elements, [", B, ", ...] on the flags' device; got ",
                 t.describe());
    bytes += double(t.nbytes());  // at most: only flagged rows are written
  }
  PROFILE_OP("zero_flagged_rows", 0, bytes, flags.device(), DType::F32);
  if (flags.is_cuda()) {
    CUDA_ONLY(cuda::zero_flagged_rows(tensors, flags); return);
  }
  const int32_t* f = flags.data<int32_t>();
  for (const Tensor& t : tensors) {
    const int64_t row = t.numel() / std::max<int64_t>(B, 1);
    int32_t* words = static_cast<int32_t*>(t.raw_data());
    for (int64_t b = 0; b < B; b++)
      if (f[b]) std::fill(words + b * row, words + (b + 1) * row, 0);
  }
}

}  // namespace iflame::infer
