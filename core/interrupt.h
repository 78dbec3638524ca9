// interrupt.h: a process-wide stop request and the places where long work gives
// way to it.
//
// ./train's SIGINT/SIGTERM handler only sets g_stop_requested. The training loop
// looks at it between steps; inside a step (on the CPU one step can take
// minutes) the forward pass and the backward pass call throw_if_interrupted()
// between blocks and between recorded ops, and it throws Interrupted when a stop
// was requested and the calling thread is inside an InterruptibleScope. The
// trainer opens that scope around the work it can drop (a step's forward and
// backward, validation, its timing step) and catches Interrupted: the unfinished
// work is discarded and the last complete state is checkpointed. Outside a scope
// (tests, sampling, evaluation, multi-process training, whose ranks must stop at
// the same step) the flag changes nothing here.
#pragma once
#include <atomic>
#include <stdexcept>

namespace iflame {

extern std::atomic<bool> g_stop_requested;

struct Interrupted : std::runtime_error {
  Interrupted() : std::runtime_error("interrupted by a stop request (SIGINT or SIGTERM)") {}
};

// While alive (and constructed with enabled = true), throw_if_interrupted() on
// this thread throws when a stop is requested. Scopes nest.
class InterruptibleScope {
 public:
  explicit InterruptibleScope(bool enabled = true);
  ~InterruptibleScope();
  InterruptibleScope(const InterruptibleScope&) = delete;
  InterruptibleScope& operator=(const InterruptibleScope&) = delete;

 private:
  bool enabled_;
};

void throw_if_interrupted();

}  // namespace iflame
