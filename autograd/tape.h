// tape.h: reverse-mode differentiation as a list of closures.
//
// Each differentiable function (autograd/functions.h) computes its output and,
// when any input needs a gradient and recording is on, appends one closure to
// the thread's tape. The closure holds exactly the tensors its backward needs.
// backward(loss) seeds d loss = 1 and runs the closures newest first; each one
// is destroyed right after it runs, which frees its saved activations and the
// gradient of its output. NoGrad turns recording off (sampling, evaluation).
//
// Inside an InterruptibleScope (core/interrupt.h), recording and backward throw
// Interrupted at the next op once a stop is requested; the tape then holds a
// partial forward, which the catcher clears.
//
// tape() is the tape functions record onto: the thread's own, unless a TapeScope
// has put a private one in its place (autograd/recompute.h runs a block's
// forward again on one during backward, and differentiates it there).
#pragma once
#include <functional>
#include <vector>

#include "autograd/variable.h"

namespace iflame {

class Tape {
 public:
  void record(std::function<void()> backward_step);
  // Runs backward from a one-element loss; the tape is empty afterwards.
  void backward(const Variable& loss);
  // Runs backward from any output whose gradient is `grad` (same shape).
  void backward(const Variable& output, const Tensor& grad);
  void clear() { steps_.clear(); }
  size_t size() const { return steps_.size(); }
  bool recording() const { return recording_; }
  void set_recording(bool on) { recording_ = on; }

 private:
  void run_steps();

  std::vector<std::function<void()>> steps_;
  bool recording_ = true;
};

// The calling thread's current tape.
Tape& tape();

// While alive, tape() is `t` on this thread (scopes nest).
class TapeScope {
 public:
  explicit TapeScope(Tape& t);
  ~TapeScope();
  TapeScope(const TapeScope&) = delete;
  TapeScope& operator=(const TapeScope&) = delete;

 private:
  Tape* previous_;
};

// While alive, nothing is recorded.
class NoGrad {
 public:
  NoGrad() : previous_(tape().recording()) { tape().set_recording(false); }
  ~NoGrad() { tape().set_recording(previous_); }
  NoGrad(const NoGrad&) = delete;
  NoGrad& operator=(const NoGrad&) = delete;

 private:
  bool previous_;
};

// True when an op with these inputs must record a backward step.
template <typename... Vars>
bool needs_grad(const Vars&... vars) {
  return tape().recording() && (vars.requires_grad() || ...);
}

}  // namespace iflame
