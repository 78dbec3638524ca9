// sample_step.cpp: the sampling step's checks and dispatch (see sample_step.h).
#include "ops/sample_step.h"

#include <type_traits>

#include "ops/dispatch.h"

namespace iflame::ops {

static_assert(std::is_trivially_copyable<SampleRow>::value && sizeof(SampleRow) % 8 == 0,
              "SampleRow is stored as raw i32 words on the device");

void sample_step(const Tensor& logits, Tensor& history, Tensor& rows, Tensor& feed, Tensor& active,
                 const SamplingConfig& cfg, bool constrained, int64_t capacity, const SampleQueue& queue) {
  const int64_t row_words = sizeof(SampleRow) / sizeof(int32_t);
  IFLAME_CHECK(logits.defined() && logits.dtype() == DType::F32 && logits.ndim() == 2 && logits.is_contiguous(),
               "sample_step: logits must be contiguous f32 [B, V], got ", logits.describe());
  const int64_t B = logits.size(0), V = logits.size(1);
  const Device dev = logits.device();
  IFLAME_CHECK(V >= kVocabSize, "sample_step: vocabulary of ", V, " is smaller than ", kVocabSize);
  IFLAME_CHECK(dev == Device::CPU || V <= kMaxSampleStepVocab, "sample_step: the CUDA step takes at most ",
               kMaxSampleStepVocab, " tokens, got ", V);
  auto check_i32 = [&](const Tensor& t, const Shape& shape, const char* name) {
    IFLAME_CHECK(t.defined() && t.dtype() == DType::I32 && t.is_contiguous() && t.device() == dev &&
                     t.shape() == shape,
                 "sample_step: ", name, " must be contiguous i32 ", shape_str(shape), " on ", device_name(dev),
                 ", got ", t.describe());
  };
  check_i32(rows, {B, row_words}, "rows");
  check_i32(feed, {B}, "feed");
  check_i32(active, {1}, "active");
  IFLAME_CHECK(history.defined() && history.dtype() == DType::I32 && history.ndim() == 2 &&
                   history.is_contiguous() && history.device() == dev && history.size(1) == capacity + 1,
               "sample_step: history must be contiguous i32 [samples, ", capacity + 1, "] on ", device_name(dev),
               ", got ", history.describe());
  IFLAME_CHECK(queue.ends && queue.samples == history.size(0) && (!queue.refill || (queue.next && queue.restarts)),
               "sample_step: the queue needs ends (and next and restarts to refill) and one history row per sample");
  if (dev == Device::CPU) return cpu::sample_step(logits, history, rows, feed, active, cfg, constrained, capacity, queue);
  CUDA_ONLY(cuda::sample_step(logits, history, rows, feed, active, cfg, constrained, capacity, queue));
}

}  // namespace iflame::ops
