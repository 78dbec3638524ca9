// counter_poll.cu: CounterPoll's pinned slots and events (see counter_poll.h).
#include "core/counter_poll.h"

#include "core/cuda_check.h"
#include "core/error.h"

namespace iflame {

struct CounterPoll::Slots {
  int32_t* pinned = nullptr;  // two slots of kMaxCounters, written by async copies
  int count[2] = {0, 0};      // counters each slot's copy holds
  cudaEvent_t done[2] = {nullptr, nullptr};
  bool queued[2] = {false, false};
  int next = 0;
};

CounterPoll::CounterPoll() : slots_(new Slots) {
  CUDA_CHECK(cudaMallocHost(&slots_->pinned, 2 * kMaxCounters * sizeof(int32_t)));
  for (cudaEvent_t& e : slots_->done) CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
}

CounterPoll::~CounterPoll() {
  // No checks: this runs in a destructor, possibly while an error unwinds.
  for (int i = 0; i < 2; i++)
    if (slots_->queued[i]) cudaEventSynchronize(slots_->done[i]);  // the copy must land before the memory goes
  for (cudaEvent_t e : slots_->done) cudaEventDestroy(e);
  cudaFreeHost(slots_->pinned);
  delete slots_;
}

bool CounterPoll::poll(const Tensor& counters, int32_t* values) {
  check_tensor(counters, "CounterPoll: counters", DType::I32, Device::CUDA);
  const int n = static_cast<int>(counters.numel());
  IFLAME_CHECK(n >= 1 && n <= kMaxCounters, "CounterPoll: 1 to ", kMaxCounters, " counters, got ", n);
  Slots& p = *slots_;
  const int slot = p.next, other = slot ^ 1;
  p.next = other;
  CUDA_CHECK(cudaMemcpyAsync(p.pinned + slot * kMaxCounters, counters.data<int32_t>(), n * sizeof(int32_t),
                             cudaMemcpyDeviceToHost, cuda_stream()));
  CUDA_CHECK(cudaEventRecord(p.done[slot], cuda_stream()));
  p.queued[slot] = true;
  p.count[slot] = n;
  if (!p.queued[other]) return false;
  CUDA_CHECK(cudaEventSynchronize(p.done[other]));
  p.queued[other] = false;
  for (int i = 0; i < n && i < p.count[other]; i++) values[i] = p.pinned[other * kMaxCounters + i];
  return true;
}

}  // namespace iflame
