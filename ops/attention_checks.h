// attention_checks.h: argument checks shared by the attention ops' entry points
// (internal to ops/). Each message names the op and the offending tensor.
#pragma once
#include <string>

#include "core/error.h"
#include "core/tensor.h"

namespace iflame::ops::detail {

// t must be defined, contiguous, of `ndim` dimensions, f32 or bf16, and (when
// `like` is given) of like's dtype and device.
inline void check_activation(const char* op, const char* name, const Tensor& t, int ndim,
                             const Tensor* like = nullptr) {
  IFLAME_CHECK(t.defined(), op, ": ", name, " is undefined");
  IFLAME_CHECK(t.ndim() == ndim, op, ": ", name, " must have ", ndim, " dimensions, got ",
               t.describe());
  IFLAME_CHECK(t.dtype() == DType::F32 || t.dtype() == DType::BF16, op, ": ", name,
               " must be f32 or bf16, got ", t.describe());
  IFLAME_CHECK(t.is_contiguous(), op, ": ", name, " must be contiguous, got ", t.describe());
  if (like) {
    IFLAME_CHECK(t.dtype() == like->dtype() && t.device() == like->device(), op, ": ", name,
                 " must have q's dtype and device (", like->describe(), "), got ", t.describe());
  }
}

inline void check_shape(const char* op, const char* name, const Tensor& t, const Shape& want) {
  IFLAME_CHECK(t.shape() == want, op, ": ", name, " must have shape ", shape_str(want), ", got ",
               t.describe());
}

// The CPU references are f32 only.
inline void check_cpu_f32(const char* op, const char* name, const Tensor& t) {
  IFLAME_CHECK(t.dtype() == DType::F32, op, ": the CPU reference takes f32 only; ", name, " is ",
               t.describe());
}

}  // namespace iflame::ops::detail
