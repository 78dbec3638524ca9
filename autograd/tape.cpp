// tape.cpp: Variable bookkeeping and the tape's backward pass.
#include "autograd/tape.h"

#include "core/error.h"
#include "core/interrupt.h"
#include "ops/elementwise.h"

namespace iflame {

Variable::Variable(Tensor value, bool requires_grad)
    : value_(std::make_shared<Tensor>(std::move(value))),
      slot_(std::make_shared<GradSlot>(value_->shape(), value_->device(), requires_grad)) {}

const Tensor& Variable::value() const {
  IFLAME_CHECK(value_, "use of an undefined Variable");
  return *value_;
}

Tensor& Variable::mutable_value() {
  IFLAME_CHECK(value_, "use of an undefined Variable");
  return *value_;
}

void GradSlot::accumulate(const Tensor& g) {
  IFLAME_CHECK(g.shape() == shape_, "gradient ", g.describe(), " for a value of shape ", shape_str(shape_));
  if (!grad_.defined())
    grad_ = g;
  else
    grad_ = ops::add(grad_, g);
}

Tensor* GradSlot::accumulation_target(DType dtype) {
  if (!grad_.defined() || grad_.dtype() != dtype || !grad_.is_contiguous() || !grad_.sole_owner()) return nullptr;
  return &grad_;
}

Tensor& GradSlot::buffer() {
  if (!grad_.defined()) grad_ = Tensor::zeros(shape_, DType::F32, device_);
  return grad_;
}

Tensor GradSlot::take() {
  Tensor g = grad_;
  grad_ = Tensor();
  return g;
}

void GradSlot::zero() {
  if (grad_.defined() && grad_.dtype() == DType::F32 && grad_.is_contiguous())
    grad_.zero_();
  else
    grad_ = Tensor();
}

void Tape::record(std::function<void()> backward_step) {
  if (!recording_) return;
  throw_if_interrupted();  // a stop request drops the rest of this forward (core/interrupt.h)
  steps_.push_back(std::move(backward_step));
}

void Tape::backward(const Variable& loss) {
  IFLAME_CHECK(loss.defined() && loss.value().numel() == 1,
               "backward needs a one-element loss, got ", loss.defined() ? loss.value().describe() : "none");
  backward(loss, Tensor::full(loss.value().shape(), 1.0f, DType::F32, loss.value().device()));
}

void Tape::backward(const Variable& output, const Tensor& grad) {
  IFLAME_CHECK(output.defined(), "backward from an undefined Variable");
  output.slot()->accumulate(grad);
  run_steps();
}

void Tape::run_steps() {
  struct RestoreRecording {  // also when a stop request ends the backward early
    Tape& tape;
    bool was;
    ~RestoreRecording() { tape.recording_ = was; }
  } restore{*this, recording_};
  recording_ = false;  // backward steps record nothing
  while (!steps_.empty()) {
    throw_if_interrupted();  // the caller drops the unfinished backward (core/interrupt.h)
    std::function<void()> step = std::move(steps_.back());
    steps_.pop_back();
    step();
  }  // each step dies here, releasing what it saved
}

namespace {
Tape*& current_tape() {
  thread_local Tape own;
  thread_local Tape* current = &own;
  return current;
}
}  // namespace

Tape& tape() { return *current_tape(); }

TapeScope::TapeScope(Tape& t) : previous_(current_tape()) { current_tape() = &t; }
TapeScope::~TapeScope() { current_tape() = previous_; }

}  // namespace iflame
