// recompute.cpp: see recompute.h for the mechanism.
#include "autograd/recompute.h"

namespace iflame::ag {

Variable recomputed(const Variable& x, std::function<Variable(const Variable&)> fn) {
  if (!tape().recording()) return fn(x);
  Variable y;
  {
    NoGrad no_grad;
    y = fn(x);  // Variables still say whether they would want gradients
  }
  if (!y.requires_grad()) return y;
  Variable out(y.value(), true);  // a fresh slot: the step below feeds y's gradient in
  std::shared_ptr<GradSlot> xs = x.slot(), os = out.slot();
  Tensor xv = x.value();
  tape().record([fn = std::move(fn), xs, xv, os]() {
    Tensor g = os->take();
    if (!g.defined()) return;
    Variable x_again(xv, xs->requires_grad());
    Tape sub;
    Variable y_again;
    {
      TapeScope scope(sub);
      y_again = fn(x_again);
    }
    sub.backward(y_again, g);
    if (xs->requires_grad()) {
      Tensor gx = x_again.slot()->take();
      if (gx.defined()) xs->accumulate(gx);
    }
  });
  return out;
}

}  // namespace iflame::ag
