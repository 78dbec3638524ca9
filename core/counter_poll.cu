// counter_poll.cu: CounterPoll's pinned slots and events (see counter_poll.h).
#include "core/counter_poll.h"

#include "core/cuda_check.h"

namespace iflame {

struct CounterPoll::Slots {
  int32_t* pinned = nullptr;  // two slots, written by async copies
  cudaEvent_t done[2] = {nullptr, nullptr};
  bool queued[2] = {false, false};
  int next = 0;
};

CounterPoll::CounterPoll() : slots_(new Slots) {
  CUDA_CHECK(cudaMallocHost(&slots_->pinned, 2 * sizeof(int32_t)));
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

int CounterPoll::poll(const Tensor& counter) {
  Slots& p = *slots_;
  const int slot = p.next, other = slot ^ 1;
  p.next = other;
  CUDA_CHECK(cudaMemcpyAsync(p.pinned + slot, counter.data<int32_t>(), sizeof(int32_t), cudaMemcpyDeviceToHost,
                             cuda_stream()));
  CUDA_CHECK(cudaEventRecord(p.done[slot], cuda_stream()));
  p.queued[slot] = true;
  if (!p.queued[other]) return -1;
  CUDA_CHECK(cudaEventSynchronize(p.done[other]));
  p.queued[other] = false;
  return p.pinned[other];
}

}  // namespace iflame
