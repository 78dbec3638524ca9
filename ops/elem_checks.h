// elem_checks.h: argument checks shared by the public entry points of the
// element-wise, norm, resampling and loss ops. Each message names the op and
// the offending tensor, e.g. "rms_norm_forward: weight: expected f32, got bf16[64] cuda".
#pragma once
#include "core/error.h"
#include "core/tensor.h"

namespace iflame::ops::detail {

// An activation: defined, contiguous, f32 or bf16, on `device`; f32 only on the
// CPU (the references are f32 loops).
inline void check_activation(const Tensor& t, const char* op, const char* what, Device device) {
  IFLAME_CHECK(t.defined(), op, ": ", what, ": undefined tensor");
  IFLAME_CHECK(t.device() == device, op, ": ", what, ": expected a ", device_name(device),
               " tensor like the op's other inputs, got ", t.describe());
  IFLAME_CHECK(t.is_contiguous(), op, ": ", what, ": expected a contiguous tensor, got ", t.describe());
  if (device == Device::CPU)
    IFLAME_CHECK(t.dtype() == DType::F32, op, ": ", what,
                 ": the CPU reference takes f32 only, got ", t.describe());
  else
    IFLAME_CHECK(t.dtype() == DType::F32 || t.dtype() == DType::BF16, op, ": ", what,
                 ": expected f32 or bf16, got ", t.describe());
}

// A tensor of one fixed dtype (parameters and their gradients: f32; tokens: i32).
inline void check_exact(const Tensor& t, const char* op, const char* what, DType dtype, Device device) {
  IFLAME_CHECK(t.defined(), op, ": ", what, ": undefined tensor");
  IFLAME_CHECK(t.dtype() == dtype, op, ": ", what, ": expected ", dtype_name(dtype), ", got ",
               t.describe());
  IFLAME_CHECK(t.device() == device, op, ": ", what, ": expected a ", device_name(device),
               " tensor like the op's other inputs, got ", t.describe());
  IFLAME_CHECK(t.is_contiguous(), op, ": ", what, ": expected a contiguous tensor, got ", t.describe());
}

inline void check_shape(const Tensor& t, const Shape& expected, const char* op, const char* what) {
  IFLAME_CHECK(t.shape() == expected, op, ": ", what, ": expected shape ", shape_str(expected), ", got ",
               t.describe());
}

}  // namespace iflame::ops::detail
