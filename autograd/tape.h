// tape.h: reverse-mode differentiation as a list of closures.
//
// Each differentiable function (autograd/functions.h) computes its output and,
// when any input needs a gradient and recording is on, appends one closure to
// the thread's tape. The closure holds exactly the tensors its backward needs.
// backward(loss) seeds d loss = 1 and runs the closures newest first; each one
// is destroyed right after it runs, which frees its saved activations and the
// gradient of its output. NoGrad turns recording off (sampling, evaluation).
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
  void clear() { steps_.clear(); }
  size_t size() const { return steps_.size(); }
  bool recording() const { return recording_; }
  void set_recording(bool on) { recording_ = on; }

 private:
  std::vector<std::function<void()>> steps_;
  bool recording_ = true;
};

// The calling thread's tape.
Tape& tape();

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
