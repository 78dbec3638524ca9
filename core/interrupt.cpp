// interrupt.cpp: the stop flag and the per-thread depth of interruptible scopes.
#include "core/interrupt.h"

namespace iflame {

std::atomic<bool> g_stop_requested{false};

namespace {
thread_local int interruptible_depth = 0;
}  // namespace

InterruptibleScope::InterruptibleScope(bool enabled) : enabled_(enabled) {
  if (enabled_) interruptible_depth++;
}

InterruptibleScope::~InterruptibleScope() {
  if (enabled_) interruptible_depth--;
}

void throw_if_interrupted() {
  if (interruptible_depth > 0 && g_stop_requested.load(std::memory_order_relaxed)) throw Interrupted();
}

}  // namespace iflame
