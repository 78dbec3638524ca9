// decode_position.cpp: argument checks and dispatch of the position-counter
// ops (see decode_position.h).
#include "ops/decode_position.h"

#include "core/profiler.h"
#include "ops/dispatch.h"

namespace iflame::ops {

void check_decode_position(const char* op, const Tensor& position, int64_t div, Device device) {
  IFLAME_CHECK(position.defined() && position.dtype() == DType::I32 && position.numel() == 1 &&
                   position.device() == device,
               op, ": position must be an i32 [1] tensor on the data's device, got ", position.describe());
  IFLAME_CHECK(div == 1 || div == 3 || div == 9, op, ": div must be 1, 3 or 9, got ", div);
}

int64_t level_position(const char* op, const Tensor& position, int64_t div) {
  const int64_t p = position.to(Device::CPU).to_ints()[0];
  IFLAME_CHECK(p >= 0, op, ": negative position ", p);
  return p / div;
}

void write_group_slot(Tensor& group, const Tensor& x, const Tensor& position, int64_t div) {
  const char* op = "write_group_slot";
  for (const Tensor* t : {static_cast<const Tensor*>(&group), &x})
    IFLAME_CHECK(t->defined() && t->dtype() == DType::F32 && t->is_contiguous() && t->device() == group.device(),
                 op, ": group and x must be contiguous f32 tensors on one device, got ", t->describe());
  check_decode_position(op, position, div, group.device());
  IFLAME_CHECK(group.ndim() == 3 && group.size(1) == 3 && x.numel() == group.size(0) * group.size(2), op,
               ": group must be [B, 3, d] and x [B, 1, d]; got ", group.describe(), " and ", x.describe());
  PROFILE_OP("write_group_slot", 0, 2 * x.nbytes(), group.device(), DType::F32);  // reads x, writes one slot
  if (group.is_cuda()) {
    CUDA_ONLY(cuda::write_group_slot(group, x, position, div); return);
  }
  cpu::write_group_slot(group, x, level_position(op, position, div));
}

void advance_position(Tensor& position) {
  IFLAME_CHECK(position.defined() && position.dtype() == DType::I32 && position.numel() == 1,
               "advance_position: position must be an i32 [1] tensor, got ", position.describe());
  PROFILE_OP("advance_position", 0, 8, position.device(), DType::F32);  // reads and writes one i32
  if (position.is_cuda()) {
    CUDA_ONLY(cuda::advance_position(position); return);
  }
  cpu::advance_position(position);
}

}  // namespace iflame::ops
