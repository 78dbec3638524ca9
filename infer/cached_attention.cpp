// cached_attention.cpp: argument checks, dispatch, and the CPU reference of the
// cached attention step (plain loops in double, like ops/cpu/causal_attention.cpp).
#include "infer/cached_attention.h"

#include <cmath>
#include <vector>

#include "core/profiler.h"
#include "ops/dispatch.h"

namespace iflame::infer {

namespace cpu {
Tensor cached_attention_step(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                             int64_t length, float scale) {
  IFLAME_CHECK(q.dtype() == DType::F32 && k_cache.dtype() == DType::F32,
               "cached_attention_step: the CPU reference takes f32 only, got ", q.describe());
  const int64_t B = q.size(0), H = q.size(1), D = q.size(2), cap = k_cache.size(1);
  Tensor o = Tensor::empty(q.shape());
  const float *Q = q.data<float>(), *K = k_cache.data<float>(), *V = v_cache.data<float>();
  float* O = o.data<float>();
  std::vector<double> score(length), out(D);
  for (int64_t b = 0; b < B; b++)
    for (int64_t h = 0; h < H; h++) {
      const float* qi = Q + (b * H + h) * D;
      double max_score = -INFINITY;
      for (int64_t j = 0; j < length; j++) {
        const float* kj = K + ((b * cap + j) * H + h) * D;
        double s = 0;
        for (int64_t d = 0; d < D; d++) s += double(qi[d]) * double(kj[d]);
        score[j] = scale * s;
        max_score = std::fmax(max_score, score[j]);
      }
      double total = 0;
      for (int64_t d = 0; d < D; d++) out[d] = 0;
      for (int64_t j = 0; j < length; j++) {
        const double p = std::exp(score[j] - max_score);
        total += p;
        const float* vj = V + ((b * cap + j) * H + h) * D;
        for (int64_t d = 0; d < D; d++) out[d] += p * vj[d];
      }
      float* oi = O + (b * H + h) * D;
      for (int64_t d = 0; d < D; d++) oi[d] = static_cast<float>(out[d] / total);
    }
  return o;
}
}  // namespace cpu

void check_cached_attention(const char* op, const Tensor& q, const Tensor& k_cache, const Tensor& v_cache) {
  IFLAME_CHECK(q.defined() && q.ndim() == 3 && q.is_contiguous(), op, ": q must be contiguous [B, H, D], got ",
               q.describe());
  for (const Tensor* c : {&k_cache, &v_cache}) {
    IFLAME_CHECK(c->defined() && c->ndim() == 4 && c->is_contiguous(), op,
                 ": caches must be contiguous [B, capacity, H, D], got ", c->describe());
    IFLAME_CHECK(c->size(0) == q.size(0) && c->size(2) == q.size(1) && c->size(3) == q.size(2), op,
                 ": cache ", c->describe(), " does not fit q ", q.describe());
    IFLAME_CHECK(c->dtype() == q.dtype() && c->device() == q.device(), op,
                 ": caches must have q's dtype and device; q ", q.describe(), ", cache ", c->describe());
  }
  IFLAME_CHECK(k_cache.shape() == v_cache.shape(), op, ": k and v caches differ: ", k_cache.describe(), " vs ",
               v_cache.describe());
}

double cached_attention_flops(const Tensor& q, int64_t length) {
  return 2 * 2 * double(q.numel()) * length;  // q . k and p v over `length` rows, per (b, h): 4*B*H*D*length
}
double cached_attention_bytes(const Tensor& q, const Tensor& k_cache, int64_t length) {
  // Reads q and `length` rows of each cache, writes o.
  return 2 * double(q.nbytes()) + 2 * double(k_cache.size(0)) * length * k_cache.size(2) * k_cache.size(3) *
                                      dtype_size(k_cache.dtype());
}

Tensor cached_attention_step(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                             int64_t length, float scale) {
  const char* op = "cached_attention_step";
  check_cached_attention(op, q, k_cache, v_cache);
  IFLAME_CHECK(length >= 1 && length <= k_cache.size(1), op, ": length ", length, " outside [1, capacity ",
               k_cache.size(1), "]");
  PROFILE_OP("cached_attention_step", cached_attention_flops(q, length), cached_attention_bytes(q, k_cache, length),
             q.device(), q.dtype());
  if (q.is_cuda()) {
    CUDA_ONLY(return cuda::cached_attention_step(q, k_cache, v_cache, length, scale));
  }
  return cpu::cached_attention_step(q, k_cache, v_cache, length, scale);
}

}  // namespace iflame::infer
