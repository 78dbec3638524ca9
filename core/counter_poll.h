// counter_poll.h: reading a few small device counters from the host without
// stopping the stream for them (CUDA builds only; core/counter_poll.cu).
//
// Each poll() queues an async copy of the counters into one of two pinned slots
// and returns the values the previous poll() copied, waiting for that copy only
// if it has not landed yet (by then it normally has, unless the host runs that
// far ahead of the GPU, which this also bounds). The answer is one poll late,
// and never needs a device-wide sync. infer/device_sampler.h polls its count of
// unfinished samples and its next sample to hand out this way.
#pragma once
#include <cstdint>

#include "core/tensor.h"

namespace iflame {

class CounterPoll {
 public:
  CounterPoll();
  ~CounterPoll();
  CounterPoll(const CounterPoll&) = delete;
  CounterPoll& operator=(const CounterPoll&) = delete;

  static constexpr int kMaxCounters = 4;

  // counters: i32 [n] contiguous on the GPU, 1 <= n <= kMaxCounters. Writes the
  // previous poll's n values to `values` and returns true; false on the first call.
  bool poll(const Tensor& counters, int32_t* values);

 private:
  struct Slots;  // pinned memory and events (counter_poll.cu)
  Slots* slots_;
};

}  // namespace iflame
