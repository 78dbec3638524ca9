// functions.cpp: forward + recorded backward for each differentiable function.
//
// Pattern: compute the output; if needs_grad(inputs), record a closure that
// captures the inputs' and the output's GradSlots plus exactly the tensors the
// backward needs. When it runs it takes the output's gradient (freeing it) and
// hands gradients to the inputs that want them.
#include "autograd/functions.h"

#include "ops/causal_attention.h"
#include "ops/cross_entropy.h"
#include "ops/elementwise.h"
#include "ops/embedding.h"
#include "ops/linear.h"
#include "ops/linear_attention.h"
#include "ops/resample.h"
#include "ops/rms_norm.h"
#include "ops/rope.h"
#include "ops/swiglu.h"

namespace iflame::ag {

namespace {
using Slot = std::shared_ptr<GradSlot>;

// A parameter's gradient buffer, or a throw-away zero buffer when the
// parameter is frozen (the op still needs somewhere to accumulate).
Tensor param_grad_target(const Slot& slot, const Tensor& value) {
  if (slot->requires_grad()) return slot->buffer();
  return Tensor::zeros(value.shape(), DType::F32, value.device());
}

// Where a backward op puts an input's gradient: added into the gradient the
// slot already holds when that one is the slot's alone (into, in place), else
// into a new tensor (fresh) that finish() hands to the slot. target() is null
// when the input wants no gradient.
struct InputGrad {
  InputGrad(const Slot& s, DType dtype)
      : slot(s), into(s->requires_grad() ? s->accumulation_target(dtype) : nullptr) {}
  Tensor* target() { return into ? into : slot->requires_grad() ? &fresh : nullptr; }
  bool accumulating() const { return into != nullptr; }
  void finish() {
    if (slot->requires_grad() && !into) slot->accumulate(fresh);
  }
  Slot slot;
  Tensor* into;
  Tensor fresh;
};
}  // namespace

Variable embedding(const Variable& weight, const Tensor& tokens, DType out_dtype) {
  Variable out(ops::embedding_forward(weight.value(), tokens, out_dtype), weight.requires_grad());
  if (needs_grad(weight)) {
    Slot w = weight.slot(), o = out.slot();
    tape().record([w, o, tokens]() {
      Tensor g = o->take();
      if (!g.defined()) return;
      ops::embedding_backward(g, tokens, w->buffer());
    });
  }
  return out;
}

Variable rms_norm(const Variable& x, const Variable& weight, float eps) {
  return rms_norm(x, weight, eps, x.value().dtype());
}

// The backward step of y = rms_norm(x): grad_x is added into the gradient x
// already has when that one is x's alone (accumulation_target), else handed over.
static void record_rms_norm(const Variable& x, const Variable& weight, const Variable& out, const Tensor& inv_rms) {
  Slot xs = x.slot(), ws = weight.slot(), o = out.slot();
  Tensor xv = x.value(), wv = weight.value();
  tape().record([xs, ws, o, xv, wv, inv_rms]() {
    Tensor g = o->take();
    if (!g.defined()) return;
    Tensor gw = param_grad_target(ws, wv);
    InputGrad gx(xs, xv.dtype());  // in x's dtype, whatever g's is
    Tensor r = ops::rms_norm_backward(g, xv, wv, inv_rms, gw, gx.into);
    if (!gx.accumulating()) gx.fresh = r;
    gx.finish();
  });
}

Variable rms_norm(const Variable& x, const Variable& weight, float eps, DType out_dtype) {
  // The CPU reference has f32 tensors only: there the cast stays its own op.
  if (out_dtype != x.value().dtype() && !x.value().is_cuda()) return cast(rms_norm(x, weight, eps), out_dtype);
  Tensor inv_rms;
  Variable out(ops::rms_norm_forward(x.value(), weight.value(), eps, inv_rms, out_dtype),
               x.requires_grad() || weight.requires_grad());
  if (needs_grad(x, weight)) record_rms_norm(x, weight, out, inv_rms);
  return out;
}

Variable linear(const Variable& x, const Variable& weight, const Variable& bias, DType compute) {
  const Tensor* b = bias.defined() ? &bias.value() : nullptr;
  bool grad = needs_grad(x, weight) || (bias.defined() && needs_grad(bias));
  // Whether the output depends on something that wants a gradient, recorded or
  // not (as every other function marks it: ag::recomputed relies on it).
  const bool depends = x.requires_grad() || weight.requires_grad() || (bias.defined() && bias.requires_grad());
  Variable out(ops::linear_forward(x.value(), weight.value(), b, compute), depends);
  if (grad) {
    Slot xs = x.slot(), ws = weight.slot(), o = out.slot();
    Slot bs = bias.defined() ? bias.slot() : nullptr;
    Tensor xv = x.value(), wv = weight.value();
    tape().record([xs, ws, bs, o, xv, wv, compute]() {
      Tensor g = o->take();
      if (!g.defined()) return;
      Tensor gw = param_grad_target(ws, wv);
      Tensor gb;
      if (bs && bs->requires_grad()) gb = bs->buffer();
      InputGrad gx(xs, xv.dtype());
      ops::linear_backward(g, xv, wv, compute, gx.target(), gw, gb.defined() ? &gb : nullptr, gx.accumulating());
      gx.finish();
    });
  }
  return out;
}

Variable swiglu(const Variable& a, const Variable& b) {
  Variable out(ops::swiglu_forward(a.value(), b.value()), a.requires_grad() || b.requires_grad());
  if (needs_grad(a, b)) {
    Slot as = a.slot(), bs = b.slot(), o = out.slot();
    Tensor av = a.value(), bv = b.value();
    tape().record([as, bs, o, av, bv]() {
      Tensor g = o->take();
      if (!g.defined()) return;
      Tensor ga, gb;
      ops::swiglu_backward(g, av, bv, ga, gb);
      if (as->requires_grad()) as->accumulate(ga);
      if (bs->requires_grad()) bs->accumulate(gb);
    });
  }
  return out;
}

Variable swiglu_pair(const Variable& x, const Variable& w1, const Variable& b1, const Variable& w2,
                     const Variable& b2, int64_t padded, DType compute) {
  IFLAME_CHECK(b1.defined() && b2.defined(), "swiglu_pair: needs both biases");
  Tensor packed_weight;
  const Tensor ab =
      ops::linear_pair_forward(x.value(), w1.value(), b1.value(), w2.value(), b2.value(), padded, compute, packed_weight);
  const bool depends = x.requires_grad() || w1.requires_grad() || b1.requires_grad() || w2.requires_grad() ||
                       b2.requires_grad();
  Variable out(ops::swiglu_packed_forward(ab), depends);
  if (needs_grad(x, w1, b1, w2, b2)) {
    Slot xs = x.slot(), w1s = w1.slot(), b1s = b1.slot(), w2s = w2.slot(), b2s = b2.slot(), o = out.slot();
    Tensor xv = x.value(), w1v = w1.value(), w2v = w2.value();
    tape().record([xs, w1s, b1s, w2s, b2s, o, xv, w1v, w2v, ab, packed_weight, compute]() {
      Tensor g = o->take();
      if (!g.defined()) return;
      const int64_t hidden = w1v.size(0), padded = packed_weight.size(0) / 2;
      const bool bias_grads = b1s->requires_grad() || b2s->requires_grad();
      Tensor bias_sum = bias_grads ? Tensor::zeros({2 * padded}, DType::F32, xv.device()) : Tensor();
      const Tensor gab = ops::swiglu_packed_backward(g, ab, bias_grads ? &bias_sum : nullptr);
      if (b1s->requires_grad()) ops::add_inplace(b1s->buffer(), bias_sum.slice(0, 0, hidden));
      if (b2s->requires_grad()) ops::add_inplace(b2s->buffer(), bias_sum.slice(0, padded, padded + hidden));
      Tensor gw1 = param_grad_target(w1s, w1v), gw2 = param_grad_target(w2s, w2v);
      InputGrad gx(xs, xv.dtype());
      ops::linear_pair_backward(gab, xv, packed_weight, hidden, compute, gx.target(), gw1, gw2, gx.accumulating());
      gx.finish();
    });
  }
  return out;
}

Variable rope(const Variable& x, int64_t pos_offset) {
  Variable out(ops::rope_forward(x.value(), pos_offset), x.requires_grad());
  if (needs_grad(x)) {
    Slot xs = x.slot(), o = out.slot();
    tape().record([xs, o, pos_offset]() {
      Tensor g = o->take();
      if (!g.defined()) return;
      xs->accumulate(ops::rope_backward(g, pos_offset));
    });
  }
  return out;
}

Variable causal_attention(const Variable& q, const Variable& k, const Variable& v, float scale) {
  Tensor lse;
  bool grad = needs_grad(q, k, v);
  Tensor o = ops::causal_attention_forward(q.value(), k.value(), v.value(), scale, grad ? &lse : nullptr);
  Variable out(o, q.requires_grad() || k.requires_grad() || v.requires_grad());
  if (grad) {
    Slot qs = q.slot(), ks = k.slot(), vs = v.slot(), os = out.slot();
    Tensor qv = q.value(), kv = k.value(), vv = v.value();
    tape().record([qs, ks, vs, os, qv, kv, vv, o, lse, scale]() {
      Tensor g = os->take();
      if (!g.defined()) return;
      Tensor gq, gk, gv;
      ops::causal_attention_backward(g, qv, kv, vv, o, lse, scale, gq, gk, gv);
      if (qs->requires_grad()) qs->accumulate(gq);
      if (ks->requires_grad()) ks->accumulate(gk);
      if (vs->requires_grad()) vs->accumulate(gv);
    });
  }
  return out;
}

Variable linear_attention(const Variable& q, const Variable& k, const Variable& v,
                          const std::vector<float>& slopes) {
  Variable out(ops::linear_attention_forward(q.value(), k.value(), v.value(), slopes),
               q.requires_grad() || k.requires_grad() || v.requires_grad());
  if (needs_grad(q, k, v)) {
    Slot qs = q.slot(), ks = k.slot(), vs = v.slot(), os = out.slot();
    Tensor qv = q.value(), kv = k.value(), vv = v.value();
    tape().record([qs, ks, vs, os, qv, kv, vv, slopes]() {
      Tensor g = os->take();
      if (!g.defined()) return;
      Tensor gq, gk, gv;
      ops::linear_attention_backward(g, qv, kv, vv, slopes, gq, gk, gv);
      if (qs->requires_grad()) qs->accumulate(gq);
      if (ks->requires_grad()) ks->accumulate(gk);
      if (vs->requires_grad()) vs->accumulate(gv);
    });
  }
  return out;
}

Variable avg_pool3(const Variable& x) {
  Variable out(ops::avg_pool3_forward(x.value()), x.requires_grad());
  if (needs_grad(x)) {
    Slot xs = x.slot(), o = out.slot();
    int64_t length = x.value().size(1);
    tape().record([xs, o, length]() {
      Tensor g = o->take();
      if (!g.defined()) return;
      xs->accumulate(ops::avg_pool3_backward(g, length));
    });
  }
  return out;
}

Variable repeat3_shift2(const Variable& x, int64_t out_length) {
  Variable out(ops::repeat3_shift2_forward(x.value(), out_length), x.requires_grad());
  if (needs_grad(x)) {
    Slot xs = x.slot(), o = out.slot();
    int64_t groups = x.value().size(1);
    tape().record([xs, o, groups]() {
      Tensor g = o->take();
      if (!g.defined()) return;
      xs->accumulate(ops::repeat3_shift2_backward(g, groups));
    });
  }
  return out;
}

// The backward step of out = a + b: out's gradient to both.
static void record_add(const Variable& a, const Variable& b, const Variable& out) {
  Slot as = a.slot(), bs = b.slot(), o = out.slot();
  tape().record([as, bs, o]() {
    Tensor g = o->take();
    if (!g.defined()) return;
    if (as->requires_grad()) as->accumulate(g);
    if (bs->requires_grad()) bs->accumulate(g);
  });
}

Variable add(const Variable& a, const Variable& b) {
  Variable out(ops::add(a.value(), b.value()), a.requires_grad() || b.requires_grad());
  if (needs_grad(a, b)) record_add(a, b, out);
  return out;
}

AddNorm add_rms_norm(const Variable& a, const Variable& b, const Variable& weight, float eps, DType out_dtype) {
  // The CPU reference has f32 tensors only, and its cast is its own op.
  if (!a.value().is_cuda()) {
    Variable sum = add(a, b);
    return {sum, rms_norm(sum, weight, eps, out_dtype)};
  }
  Tensor sum_value, inv_rms;
  Tensor normed_value =
      ops::add_rms_norm_forward(a.value(), b.value(), weight.value(), eps, sum_value, inv_rms, out_dtype);
  AddNorm r;
  r.sum = Variable(sum_value, a.requires_grad() || b.requires_grad());
  r.normed = Variable(normed_value, r.sum.requires_grad() || weight.requires_grad());
  // In the order the two functions would record: backward runs the norm's step first.
  if (needs_grad(a, b)) record_add(a, b, r.sum);
  if (needs_grad(r.sum, weight)) record_rms_norm(r.sum, weight, r.normed, inv_rms);
  return r;
}

Variable cast(const Variable& x, DType dtype) {
  const DType from = x.value().dtype();
  if (from == dtype) return x;
  Variable out(x.value().to(dtype), x.requires_grad());
  if (needs_grad(x)) {
    Slot xs = x.slot(), o = out.slot();
    tape().record([xs, o, from]() {
      Tensor g = o->take();
      if (!g.defined()) return;
      xs->accumulate(g.to(from));
    });
  }
  return out;
}

Variable zero_pad(const Variable& x, const Shape& shape) {
  const Tensor& xv = x.value();
  IFLAME_CHECK((xv.ndim() == 1 || xv.ndim() == 2) && int64_t(shape.size()) == xv.ndim() && xv.dtype() == DType::F32,
               "zero_pad: needs a 1-D or 2-D f32 tensor and a shape of its rank, got ", xv.describe(), " to ",
               shape_str(shape));
  for (int d = 0; d < xv.ndim(); d++)
    IFLAME_CHECK(shape[d] >= xv.size(d), "zero_pad: cannot pad ", xv.describe(), " down to ", shape_str(shape));
  if (shape == xv.shape()) return x;
  // The corner of a padded tensor that x occupies.
  const int64_t rows = xv.size(0), cols = xv.ndim() == 2 ? xv.size(1) : -1;
  auto corner = [rows, cols](const Tensor& padded) {
    Tensor c = padded.slice(0, 0, rows);
    return cols >= 0 ? c.slice(1, 0, cols) : c;
  };
  Tensor padded = Tensor::zeros(shape, DType::F32, xv.device());
  corner(padded).copy_from(xv);
  Variable out(padded, x.requires_grad());
  if (needs_grad(x)) {
    Slot xs = x.slot(), o = out.slot();
    tape().record([xs, o, corner]() {
      Tensor g = o->take();
      if (!g.defined()) return;
      ops::add_inplace(xs->buffer(), corner(g).contiguous());
    });
  }
  return out;
}

Variable skip_scale_add(const Variable& x, const Variable& weights, int index, const Variable& skip) {
  Variable out(ops::skip_scale_add_forward(x.value(), weights.value(), index, skip.value()),
               x.requires_grad() || weights.requires_grad() || skip.requires_grad());
  if (needs_grad(x, weights, skip)) {
    Slot xs = x.slot(), ws = weights.slot(), ss = skip.slot(), o = out.slot();
    Tensor xv = x.value(), wv = weights.value();
    tape().record([xs, ws, ss, o, xv, wv, index]() {
      Tensor g = o->take();
      if (!g.defined()) return;
      Tensor gx;
      Tensor gw = param_grad_target(ws, wv);
      ops::skip_scale_add_backward(g, xv, wv, index, gx, gw);
      if (xs->requires_grad()) xs->accumulate(gx);
      if (ss->requires_grad()) ss->accumulate(g);
    });
  }
  return out;
}

Variable reshape(const Variable& x, const Shape& shape) {
  Variable out(x.value().reshape(shape), x.requires_grad());
  if (needs_grad(x)) {
    Slot xs = x.slot(), o = out.slot();
    Shape original = x.value().shape();
    tape().record([xs, o, original]() {
      Tensor g = o->take();
      if (!g.defined()) return;
      xs->accumulate(g.reshape(original));
    });
  }
  return out;
}

LossAndAccuracy cross_entropy(const Variable& logits, const Tensor& targets, int ignore_index) {
  ops::CrossEntropyOutput fwd = ops::cross_entropy_forward(logits.value(), targets, ignore_index);
  LossAndAccuracy r;
  r.loss = Variable(fwd.loss, logits.requires_grad());
  r.accuracy = fwd.accuracy;
  r.counted = fwd.valid_count;
  if (needs_grad(logits)) {
    Slot ls = logits.slot(), o = r.loss.slot();
    Tensor lv = logits.value();
    tape().record([ls, o, lv, targets, fwd, ignore_index]() {
      Tensor g = o->take();
      if (!g.defined()) return;
      ls->accumulate(ops::cross_entropy_backward(g, lv, targets, fwd, ignore_index));
    });
  }
  return r;
}

}  // namespace iflame::ag
