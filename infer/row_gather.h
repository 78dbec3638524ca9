// row_gather.h: copying chosen rows (along dim 0) of a batch's tensors into a
// smaller batch, on the tensors' device: how the sampling loop compacts its
// rows in the drain of a run (infer/decode.h's compact_rows,
// infer/device_sampler.h's keep_rows). Built on Tensor::slice + copy_from:
// device-to-device copies, one per run of consecutive kept rows, no host
// round trip of the data.
#pragma once
#include <vector>

#include "core/tensor.h"

namespace iflame::infer {

// Throws unless `keep` lists distinct rows of a batch of `batch`, at least one;
// `what` names the caller in the message.
void check_kept_rows(const std::vector<int>& keep, int64_t batch, const char* what);

// Row i of dst = row keep[i] of src (dst [keep.size(), ...], src [B, ...], the
// rest of their shapes equal, one device; keep checked as above). Both
// undefined: nothing to do.
void copy_rows(Tensor& dst, const Tensor& src, const std::vector<int>& keep);

// A new tensor holding src's rows keep[0], keep[1], ... (copy_rows into a fresh one).
Tensor gather_rows(const Tensor& src, const std::vector<int>& keep);

}  // namespace iflame::infer
