// recompute.h: activation recomputation (gradient checkpointing) of one piece
// of a forward pass, typically a transformer block.
//
// Normally every function inside a block records a backward step that keeps
// the tensors it needs (autograd/functions.cpp): eight or nine [B, T, d] and
// three [B, T, ffn] tensors per block (training/memory_model.h counts them).
// recomputed(x, fn) instead
//   forward:  runs fn(x) with recording off, so nothing inside fn is kept, and
//             records ONE step that holds only x's value, x's gradient slot,
//             fn itself and the gradient slot of the output it returns;
//   backward: when that step runs (the output's gradient g is complete, since
//             everything after fn ran backward first), it
//               1. makes a fresh leaf x' over the same value (x' wants a
//                  gradient exactly when x does),
//               2. runs y' = fn(x') again with recording on, onto a private
//                  sub-tape (TapeScope), so all the saved tensors of fn exist
//                  again, for this step only,
//               3. runs the sub-tape backward seeded with g: parameter
//                  gradients accumulate straight into the parameters' buffers
//                  (fn uses the same parameter Variables), and x' collects the
//                  gradient of x,
//               4. hands x' 's gradient to x, and drops the sub-tape.
// The sub-tape runs the same ops on the same values in the same order as the
// steps fn would have recorded on the main tape, so every gradient is the same
// bit for bit on the CPU (and on the GPU up to the float atomics of the
// rms_norm and embedding weight gradients, which are not repeatable anyway).
// One exception, in the last bit: if x already holds a gradient g0 from other
// uses when this step runs, x ends with g0 + (g1 + g2) where the plain tape
// gives (g0 + g1) + g2 (g1, g2: the contributions from inside fn). The model
// never meets it: a block's input feeds only that block.
//
// fn must be deterministic (same output for the same input): nothing in the
// iFlame forward draws random numbers (there is no dropout), so this holds. fn
// must not capture Variables whose values it wants freed: it lives until the
// backward step has run. The cost is one more forward of fn per backward.
// Under NoGrad (or when nothing in fn wants a gradient) it is just fn(x).
#pragma once
#include <functional>

#include "autograd/tape.h"

namespace iflame::ag {

Variable recomputed(const Variable& x, std::function<Variable(const Variable&)> fn);

}  // namespace iflame::ag
