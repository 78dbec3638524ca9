// embedding.cpp: argument checks and device dispatch for the embedding op.
#include "ops/embedding.h"

#include "core/profiler.h"
#include "ops/dispatch.h"
#include "ops/elem_checks.h"

namespace iflame::ops {

namespace {
Shape with_last(const Shape& s, int64_t d) {
  Shape out = s;
  out.push_back(d);
  return out;
}

// CPU only: every token in [0, V).
void check_token_range(const Tensor& tokens, int64_t vocab, const char* op) {
  const int32_t* tok = tokens.data<int32_t>();
  for (int64_t i = 0; i < tokens.numel(); i++)
    IFLAME_CHECK(tok[i] >= 0 && tok[i] < vocab, op, ": token ", tok[i], " at flat position ", i,
                 " of tokens ", shape_str(tokens.shape()), " is outside the vocabulary [0, ", vocab, ")");
}
}  // namespace

Tensor embedding_forward(const Tensor& weight, const Tensor& tokens, DType out_dtype) {
  const char* op = "embedding_forward";
  IFLAME_CHECK(weight.defined(), op, ": weight: undefined tensor");
  const Device dev = weight.device();
  detail::check_exact(weight, op, "weight", DType::F32, dev);
  IFLAME_CHECK(weight.ndim() == 2, op, ": weight: expected [V, d], got ", weight.describe());
  detail::check_exact(tokens, op, "tokens", DType::I32, dev);
  IFLAME_CHECK(out_dtype == DType::F32 || out_dtype == DType::BF16, op,
               ": out_dtype must be f32 or bf16, got ", dtype_name(out_dtype));
  // Reads the tokens and one f32 table row per token, writes a row per token in out_dtype.
  PROFILE_OP("embedding_forward", 0,
             tokens.nbytes() + tokens.numel() * weight.size(1) * (4 + dtype_size(out_dtype)), dev, DType::F32);
  if (dev == Device::CPU) {
    IFLAME_CHECK(out_dtype == DType::F32, op, ": the CPU reference gives f32 only, asked for ",
                 dtype_name(out_dtype));
    check_token_range(tokens, weight.size(0), op);
    return cpu::embedding_forward(weight, tokens, out_dtype);
  }
  CUDA_ONLY(return cuda::embedding_forward(weight, tokens, out_dtype));
}

void embedding_backward(const Tensor& grad_out, const Tensor& tokens, Tensor& grad_weight) {
  const char* op = "embedding_backward";
  IFLAME_CHECK(grad_weight.defined(), op, ": grad_weight: undefined tensor");
  const Device dev = grad_weight.device();
  detail::check_exact(grad_weight, op, "grad_weight", DType::F32, dev);
  IFLAME_CHECK(grad_weight.ndim() == 2, op, ": grad_weight: expected [V, d], got ", grad_weight.describe());
  detail::check_exact(tokens, op, "tokens", DType::I32, dev);
  detail::check_activation(grad_out, op, "grad_out", dev);
  detail::check_shape(grad_out, with_last(tokens.shape(), grad_weight.size(1)), op, "grad_out");
  // Reads grad_out and the tokens, reads and writes one f32 row of grad_weight per token.
  PROFILE_OP("embedding_backward", 0, grad_out.nbytes() + tokens.nbytes() + 2 * 4 * grad_out.numel(), dev,
             DType::F32);
  if (dev == Device::CPU) {
    check_token_range(tokens, grad_weight.size(0), op);
    cpu::embedding_backward(grad_out, tokens, grad_weight);
    return;
  }
  CUDA_ONLY(cuda::embedding_backward(grad_out, tokens, grad_weight));
}

}  // namespace iflame::ops
