// small_product.cpp: which path takes a decoding step's product (see
// small_product.h), and the fallback to linear_forward.
#include "ops/small_product.h"

#include "ops/dispatch.h"
#include "ops/linear.h"
#include "ops/swiglu.h"

namespace iflame::ops {

namespace {
// Which one-kernel GPU path takes a product, if any (small_product.h).
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
  return linear_forward(x, w, bias.defined() ? &bias : nullptr, compute);
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
  return swiglu_packed_forward(linear_forward(x, w12, b12.defined() ? &b12 : nullptr, compute));
}

}  // namespace iflame::ops
