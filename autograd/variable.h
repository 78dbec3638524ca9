// variable.h: a tensor that takes part in differentiation.
//
// A Variable is a shared handle on a value and a GradSlot. The slot holds the
// gradient and is what the tape's backward steps keep hold of, so a recorded
// step keeps alive only the tensors it saved on purpose, never the values of
// the Variables it touches. Parameters are leaves whose gradient is a
// persistent f32 buffer that backward ops accumulate into (buffer()); other
// Variables receive whole gradient tensors (accumulate()), which the tape frees
// as soon as the step that produced the Variable has used them (take()).
#pragma once
#include <memory>
#include <string>

#include "core/tensor.h"

namespace iflame {

class GradSlot {
 public:
  GradSlot(Shape shape, Device device, bool requires_grad)
      : shape_(std::move(shape)), device_(device), requires_grad_(requires_grad) {}
  bool requires_grad() const { return requires_grad_; }
  const Tensor& grad() const { return grad_; }
  // Adds g (the first call keeps g itself; later calls make a new sum, so a
  // tensor handed in is never modified).
  void accumulate(const Tensor& g);
  // The gradient held so far, when a backward op may add its own into it in
  // place instead of handing over a new tensor (which accumulate() would then
  // add, one more pass over both): defined, contiguous, of `dtype`, and shared
  // with no other tensor, so the change is seen by this slot alone. Else null
  // (no gradient yet, or one that someone else also holds): use accumulate().
  Tensor* accumulation_target(DType dtype);
  // The gradient as an f32 buffer of the value's shape, zero on first use.
  Tensor& buffer();
  // Hands the gradient over and forgets it.
  Tensor take();
  // Forgets the gradient (a parameter's buffer is zeroed and kept).
  void zero();

 private:
  Shape shape_;
  Device device_;
  bool requires_grad_;
  Tensor grad_;
};

class Variable {
 public:
  Variable() = default;
  explicit Variable(Tensor value, bool requires_grad = false);

  bool defined() const { return value_ != nullptr; }
  const Tensor& value() const;
  Tensor& mutable_value();  // optimizers update parameters in place
  bool requires_grad() const { return slot_ && slot_->requires_grad(); }
  const Tensor& grad() const { return slot_->grad(); }
  Tensor& grad_buffer() { return slot_->buffer(); }
  void zero_grad() { slot_->zero(); }
  const std::shared_ptr<GradSlot>& slot() const { return slot_; }

 private:
  std::shared_ptr<Tensor> value_;
  std::shared_ptr<GradSlot> slot_;
};

}  // namespace iflame
