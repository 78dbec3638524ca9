// decode_position.cpp: argument checks and dispatch of the position-counter
// ops (see decode_position.h).
#include "ops/decode_position.h"

#include "core/profiler.h"
#include "ops/dispatch.h"

namespace iflame::ops {

void check_decode_position(const char* op, const Tensor& position, int64_t div, Device device, int64_t batch) {
  IFLAME_CHECK(position.defined() && position.dtype() == DType::I32 && position.ndim() == 1 &&
                   (position.numel() == 1 || position.numel() == batch) && position.is_contiguous() &&
                   position.device() == device,
               op, ": position must be an i32 [1] or [", batch, "] tensor on the data's device, got ",
               position.describe());
  IFLAME_CHECK(div == 1 || div == 3 || div == 9, op, ": div must be 1, 3 or 9, got ", div);
}

std::vector<int64_t> level_positions(const char* op, const Tensor& position, int64_t div, int64_t batch) {
  const std::vector<int32_t> p = position.to(Device::CPU).to_ints();
  std::vector<int64_t> level(batch);
  for (int64_t b = 0; b < batch; b++) {
    const int64_t v = p[p.size() == 1 ? 0 : b];
    IFLAME_CHECK(v >= 0, op, ": negative position ", v);
    level[b] = v / div;
  }
  return level;
}

void write_group_slot(Tensor& group, const Tensor& x, const Tensor& position, int64_t div) {
  const char* op = "write_group_slot";
  for (const Tensor* t : {static_cast<const Tensor*>(&group), &x})
    IFLAME_CHECK(t->defined() && t->dtype() == DType::F32 && t->is_contiguous() && t->device() == group.device(),
                 op, ": group and x must be contiguous f32 tensors on one device, got ", t->describe());
  IFLAME_CHECK(group.ndim() == 3 && group.size(1) == 3 && x.numel() == group.size(0) * group.size(2), op,
               ": group must be [B, 3, d] and x [B, 1, d]; got ", group.describe(), " and ", x.describe());
  check_decode_position(op, position, div, group.device(), group.size(0));
  PROFILE_OP("write_group_slot", 0, 2 * x.nbytes(), group.device(), DType::F32);  // reads x, writes one slot
  if (group.is_cuda()) {
    CUDA_ONLY(cuda::write_group_slot(group, x, position, div); return);
  }
  cpu::write_group_slot(group, x, level_positions(op, position, div, group.size(0)));
}

void advance_position(Tensor& position) {
  IFLAME_CHECK(position.defined() && position.dtype() == DType::I32 && position.ndim() == 1 &&
                   position.is_contiguous(),
               "advance_position: position must be a contiguous i32 [n] tensor, got ", position.describe());
  PROFILE_OP("advance_position", 0, 8 * position.numel(), position.device(), DType::F32);  // reads and writes n i32
  if (position.is_cuda()) {
    CUDA_ONLY(cuda::advance_position(position); return);
  }
  cpu::advance_position(position);
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
  cpu::zero_flagged_rows(tensors, flags);
}

}  // namespace iflame::ops
