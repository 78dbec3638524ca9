// counter_poll.h: reading a small device counter from the host without stopping
// the stream for it (CUDA builds only; core/counter_poll.cu).
//
// Each poll() queues an async copy of the counter into one of two pinned slots
// and returns the value the previous poll() copied, waiting for that copy only
// if it has not landed yet (by then it normally has, unless the host runs that
// far ahead of the GPU, which this also bounds). The answer is one poll late,
// and never needs a device-wide sync. infer/device_sampler.h polls its count of
// unfinished samples this way.
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

  // counter: i32 [1] on the GPU. Returns the previous poll's value, -1 on the first call.
  int poll(const Tensor& counter);

 private:
  struct Slots;  // pinned memory and events (counter_poll.cu)
  Slots* slots_;
};

}  // namespace iflame
