// row_gather.cpp: row lists checked, rows copied run by run (see row_gather.h).
#include "infer/row_gather.h"

#include <algorithm>

#include "core/error.h"

namespace iflame::infer {

void check_kept_rows(const std::vector<int>& keep, int64_t batch, const char* what) {
  IFLAME_CHECK(!keep.empty(), what, ": the list of rows to keep is empty");
  std::vector<char> seen(batch, 0);
  for (int r : keep) {
    IFLAME_CHECK(r >= 0 && r < batch, what, ": row ", r, " is outside the batch of ", batch);
    IFLAME_CHECK(!seen[r], what, ": row ", r, " is listed twice");
    seen[r] = 1;
  }
}

void copy_rows(Tensor& dst, const Tensor& src, const std::vector<int>& keep) {
  if (!dst.defined() && !src.defined()) return;
  IFLAME_CHECK(dst.defined() && src.defined() && src.ndim() >= 1 && dst.ndim() == src.ndim(),
               "copy_rows: rows of ", src.describe(), " into ", dst.describe());
  check_kept_rows(keep, src.size(0), "copy_rows");
  Shape shape = src.shape();
  shape[0] = static_cast<int64_t>(keep.size());
  IFLAME_CHECK(dst.shape() == shape, "copy_rows: ", keep.size(), " rows of ", src.describe(), " into ",
               dst.describe());
  // Consecutive kept rows (keep[i + k] == keep[i] + k) move in one copy.
  for (size_t i = 0; i < keep.size();) {
    size_t n = 1;
    while (i + n < keep.size() && keep[i + n] == keep[i] + int(n)) n++;
    dst.slice(0, int64_t(i), int64_t(i + n)).copy_from(src.slice(0, keep[i], keep[i] + int64_t(n)));
    i += n;
  }
}

Tensor gather_rows(const Tensor& src, const std::vector<int>& keep) {
  if (!src.defined()) return src;
  IFLAME_CHECK(src.ndim() >= 1, "gather_rows: a tensor with rows is needed, got ", src.describe());
  Shape shape = src.shape();
  shape[0] = static_cast<int64_t>(keep.size());
  Tensor out = Tensor::empty(shape, src.dtype(), src.device());
  copy_rows(out, src, keep);
  return out;
}

}  // namespace iflame::infer
