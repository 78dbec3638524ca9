// sampling_core.h: the per-row sampling rules as __host__ __device__ code, shared
// by the two implementations of the sampling op (ops/sample_step.h: the loop of
// ops/cpu/sample_step.cpp and the kernel of ops/cuda/sample_step.cu), so both
// devices run the same lines.
//
// Four parts:
//   - the draw: sampling_uniform(), the Philox number of (seed, position, sample id);
//   - the row sampler in pieces: which tokens are candidates, their order (most
//     likely first, ties to the lower token), how many top-k keeps, each kept
//     token's weight exp(logit / T - top / T) in double, and nucleus_pick(), the
//     top-p cut and the draw over the weights, summed one by one in candidate
//     order. Put together (sample_row() of ops/cpu/sample_step.cpp, or the kernel) they give
//     exactly infer/sampler.cpp's sample_token() for the same logits and u;
//   - where constrained sampling applies top-k and top-p (SamplingConfig::filter_on):
//     to the allowed tokens (FilterOn::Allowed, the pieces above with the allowed
//     tokens as candidates), or to the model's whole distribution, the forbidden
//     tokens removed from what they keep afterwards (FilterOn::Raw, raw_filter_draw());
//   - constrained decoding with O(1) work per token: ConstraintState is updated by
//     constraint_push() as each token is appended, constraint_mask() turns it into
//     bounds on the vertex being written, and constraint_allows() tests one token
//     against them. The allowed set is exactly allowed_next_tokens() of
//     infer/constrain.h (the rules are written there), which rescans the sequence.
//
// Exactness across devices: every step here is an IEEE operation that rounds the
// same on the host and the GPU (integer work, float compares, double division,
// addition and multiplication, none of which nvcc can fuse into an fma here)
// except exp(): the host's libm and CUDA's exp(double) are both within 1 ulp and
// almost always agree, but are not promised to be identical. A token can differ
// only if the draw lands within ~1e-16 (relative) of a boundary between two
// candidates' cumulative weights, or the top-p sum ties top_p * total as closely.
// FilterOn::Raw adds only flag tests, float compares and double additions in
// candidate order, so the same holds for its draws.
#pragma once
#include <cmath>
#include <cstdint>

#include "core/bf16.h"  // IFLAME_HD
#include "core/philox.h"
#include "core/tokens.h"

namespace iflame::ops {

// Where constrained sampling applies top-k and top-p (unconstrained sampling has
// one candidate set, so both give the same draw there):
//   Allowed  to the allowed tokens: candidates = the tokens the order allows,
//            then top-k, top-p and the draw over them (the default);
//   Raw      to the model's distribution: the candidates, top-k and top-p of
//            unconstrained sampling (every token but PAD and START), then the
//            tokens the order forbids are dropped from what they keep and the
//            draw is over the rest, with their weights. When nothing kept is
//            allowed: the most likely allowed token (raw_filter_draw()).
// Greedy sampling takes the most likely allowed token either way.
enum class FilterOn : int32_t { Allowed = 0, Raw = 1 };

inline const char* filter_on_name(FilterOn f) { return f == FilterOn::Raw ? "raw" : "allowed"; }

struct SamplingConfig {
  float temperature = 1.0f;  // <= 0: greedy (argmax)
  int top_k = 50;            // <= 0: no top-k filter
  float top_p = 0.95f;       // >= 1: no nucleus filter
  uint64_t seed = 0;
  FilterOn filter_on = FilterOn::Allowed;  // constrained sampling: top-k / top-p over the allowed tokens or the raw ones
};

// The uniform draw in [0, 1) for (seed, position, sample_id): the position is the
// index of the token being drawn.
IFLAME_HD float sampling_uniform(uint64_t seed, uint64_t position, uint64_t sample_id) {
  return philox_unit_float(philox_draw(seed, position, sample_id).v[0]);
}

// ------------------------------------------------------------------ the row sampler

// Unconstrained sampling: every token but PAD and START.
IFLAME_HD bool plain_allows(int32_t token) { return token != kPadToken && token != kStartToken; }

// Candidate order: does token a (logit la) come before token b (logit lb)? Most
// likely first, ties to the lower token: the order std::stable_sort by logit gives
// sample_token() (logits are never NaN).
IFLAME_HD bool candidate_before(float la, int32_t a, float lb, int32_t b) { return la > lb || (la == lb && a < b); }

// Candidate t's place in candidate order among the tokens flagged in
// candidate[0 .. vocab): how many come before it, counted up to `limit` (only
// places below the kept number matter). What the CUDA step computes per token in
// parallel instead of sorting; for every flagged t the places are 0, 1, 2, ...
IFLAME_HD int candidate_rank(const float* logits, const unsigned char* candidate, int vocab, int32_t t, int limit) {
  const float lt = logits[t];
  int rank = 0;
  for (int s = 0; s < vocab && rank < limit; s++) rank += candidate[s] && candidate_before(logits[s], s, lt, t);
  return rank;
}

// Greedy sampling takes the first candidate (no weights, no draw).
IFLAME_HD bool sampling_is_greedy(const SamplingConfig& cfg) { return cfg.temperature <= 0.0f || cfg.top_k == 1; }

// How many of n candidates top-k keeps.
IFLAME_HD int sampling_keep(const SamplingConfig& cfg, int n) { return cfg.top_k > 0 && cfg.top_k < n ? cfg.top_k : n; }

// The unnormalised probability of a kept candidate: exp(logit / T - top / T) in
// double, with top the first candidate's logit.
IFLAME_HD double candidate_weight(float logit, float top_logit, float temperature) {
  const double top = double(top_logit) / temperature;
  return ::exp(double(logit) / temperature - top);
}

// The top-p cut over the weights of the kept candidates, in candidate order: how
// many stay. Candidate i stays while the weight before it is below top_p * total
// (at least one stays). Sums run one by one in order, as in sample_token().
IFLAME_HD int nucleus_cut(const double* weight, int keep, float top_p) {
  if (!(top_p < 1.0f)) return keep;
  double total = 0;
  for (int i = 0; i < keep; i++) total += weight[i];
  double before = 0;
  int n = 0;
  while (n < keep && before < double(top_p) * total) before += weight[n++];
  return n > 1 ? n : 1;
}

// The top-p cut and the draw over the weights of the kept candidates, in
// candidate order: returns the index of the chosen one, the first i whose
// cumulative weight exceeds u * (total of those the cut keeps).
IFLAME_HD int nucleus_pick(const double* weight, int keep, float top_p, float u) {
  keep = nucleus_cut(weight, keep, top_p);
  double total = 0;
  for (int i = 0; i < keep; i++) total += weight[i];
  const double target = double(u) * total;
  double acc = 0;
  for (int i = 0; i < keep; i++) {
    acc += weight[i];
    if (target < acc) return i;
  }
  return keep - 1;
}

// Does constrained sampling filter the raw distribution (FilterOn::Raw) at this
// draw? Not when greedy: that is the most likely allowed token in both modes.
IFLAME_HD bool filters_raw(const SamplingConfig& cfg, bool constrained) {
  return constrained && cfg.filter_on == FilterOn::Raw && !sampling_is_greedy(cfg);
}

// The most likely token that allows(t) accepts (ties to the lower token); -1 if none.
template <class Allows>
IFLAME_HD int32_t most_likely_allowed(const float* logits, int vocab, const Allows& allows) {
  int32_t best = -1;
  for (int32_t t = 0; t < vocab; t++)
    if (allows(t) && (best < 0 || candidate_before(logits[t], t, logits[best], best))) best = t;
  return best;
}

// FilterOn::Raw's draw. sorted[0 .. keep) and weight[0 .. keep): the tokens
// unconstrained sampling keeps after top-k, in candidate order, with their
// weights (candidate_weight, top = sorted[0]'s logit). The top-p cut is
// nucleus_cut() over all of them; of those it keeps, the tokens allows(t)
// rejects are dropped, and the first allowed i whose cumulative weight (allowed
// ones only, summed one by one in order) exceeds u * (their total) is drawn.
// When the cut keeps no allowed token (or only ones of weight 0, which top-p < 1
// never keeps), the most likely allowed token of the whole row.
template <class Allows>
IFLAME_HD int32_t raw_filter_draw(const float* logits, int vocab, const int32_t* sorted, const double* weight,
                                  int keep, float top_p, float u, const Allows& allows) {
  const int kept = nucleus_cut(weight, keep, top_p);
  double total = 0;
  for (int i = 0; i < kept; i++)
    if (allows(sorted[i])) total += weight[i];
  if (total > 0) {
    const double target = double(u) * total;
    double acc = 0;
    int32_t last = -1;
    for (int i = 0; i < kept; i++) {
      if (!allows(sorted[i])) continue;
      acc += weight[i];
      last = sorted[i];
      if (target < acc) return last;
    }
    return last;
  }
  return most_likely_allowed(logits, vocab, allows);
}

// ------------------------------------------------------------------ constrained decoding

constexpr int64_t kCoordinateLevels = kNumCoordinateTokens;                             // 129
constexpr int64_t kVertexKeys = kCoordinateLevels * kCoordinateLevels * kCoordinateLevels;  // distinct vertices

// key = (y * 129 + x) * 129 + z for a vertex written (z, x, y).
IFLAME_HD int64_t vertex_key(const int32_t* t) {
  return (int64_t(t[2]) * kCoordinateLevels + t[1]) * kCoordinateLevels + t[0];
}

// Can a vertex whose first `known` written tokens are t[0 .. known) be completed
// to a key in [lo, hi] other than `excluded` (-1: none)? The keys of the
// completions are base + stride * m for m in [0, count): z known fixes the key
// modulo 129, z and x known fix it modulo 129^2. (infer/constrain.cpp's test.)
IFLAME_HD bool vertex_completable(const int32_t* t, int known, int64_t lo, int64_t hi, int64_t excluded) {
  int64_t base = 0, stride = 1, count = kVertexKeys;
  if (known == 1) {
    base = t[0], stride = kCoordinateLevels, count = kCoordinateLevels * kCoordinateLevels;
  } else if (known == 2) {
    base = t[0] + kCoordinateLevels * t[1], stride = kCoordinateLevels * kCoordinateLevels, count = kCoordinateLevels;
  } else if (known == 3) {
    base = vertex_key(t), stride = 1, count = 1;
  }
  if (lo < base) lo = base;
  if (hi > base + stride * (count - 1)) hi = base + stride * (count - 1);
  if (lo > hi) return false;
  const int64_t m_lo = (lo - base + stride - 1) / stride, m_hi = (hi - base) / stride;
  if (m_lo > m_hi) return false;
  if (m_hi > m_lo) return true;  // two completions: one of them is not `excluded`
  return base + stride * m_lo != excluded;
}

// What constrained decoding needs of the sequence so far, updated in O(1) per
// token: the body (tokens after the START row) cut into rows of 9, and the key
// of the last completed face: (first vertex, the lower and the higher of the
// other two), compared lexicographically (spec §1's face order).
struct ConstraintState {
  int64_t previous_first;  // the last completed row's first vertex (rows >= 1)
  int64_t previous_low;    // the lower of its other two vertices
  int64_t previous_high;   // the higher of them
  int32_t body;            // tokens after the START row
  int32_t has_end;         // an END token is in the body
  int32_t row[kTokensPerFace];  // the row being written: its first body % 9 tokens
  int32_t unused;               // keeps the size a multiple of 8 with no hidden padding
};

// The state right after the START row.
IFLAME_HD ConstraintState constraint_start() {
  ConstraintState s;
  s.previous_first = s.previous_low = s.previous_high = 0;
  s.body = 0;
  s.has_end = 0;
  for (int i = 0; i < kTokensPerFace; i++) s.row[i] = 0;
  s.unused = 0;
  return s;
}

// Appends one token to the body.
IFLAME_HD void constraint_push(ConstraintState& s, int32_t token) {
  if (token == kEndToken) s.has_end = 1;
  const int col = s.body % kTokensPerFace;
  s.row[col] = token;
  s.body++;
  if (col == kTokensPerFace - 1) {
    const int64_t a = vertex_key(s.row + 3), b = vertex_key(s.row + 6);
    s.previous_first = vertex_key(s.row);
    s.previous_low = a < b ? a : b;
    s.previous_high = a < b ? b : a;
  }
}

// The rules at the next position, as bounds on the vertex being written:
// a coordinate c is allowed iff the vertex's known tokens followed by c can be
// completed to a key in [lo, hi] other than `excluded`.
struct ConstraintMask {
  int64_t lo, hi, excluded;
  int32_t vertex[3];    // the vertex's known tokens (the first `known`)
  int32_t known;        // 0, 1 or 2
  int32_t end_only;     // inside the END row: only END
  int32_t end_allowed;  // at a row boundary after a face (or, for a bad prompt, when nothing else is)
};

// The keys the corner being written may take, K = kVertexKeys keys in all, with
// the face (v1, v2, v3) so far and the previous face (p1, pl, ph): a key w is
// allowed iff some completion is a valid face (v2 > v1, v3 > v1, v2 != v3)
// whose key (v1, min(v2, v3), max(v2, v3)) is above (p1, pl, ph). Worked out:
//   v1: w <= K - 3 (two larger vertices follow) and w >= p1, and w > p1 when
//       (pl, ph) is already the largest pair (K - 2, K - 1);
//   v2: w > v1 when v1 > p1 (and v1 <= K - 3). When v1 == p1, min(v2, v3) >= pl
//       is needed, with equality only if max(v2, v3) can exceed ph: w >= pl,
//       and w > pl when ph == K - 1 (v3 = K - 1 then makes v2 = K - 1 fine too);
//   v3: w > v1, w != v2 when v1 > p1. When v1 == p1: v2 < pl allows nothing;
//       v2 == pl needs w > ph; v2 > pl needs w >= pl, and w > pl unless v2 > ph.
// A face with v1 < p1 (only after a prompt that breaks the rules) allows nothing.
IFLAME_HD ConstraintMask constraint_mask(const ConstraintState& s) {
  constexpr int64_t K = kVertexKeys;
  ConstraintMask m;
  const int32_t row = s.body / kTokensPerFace, col = s.body % kTokensPerFace;
  const int slot = col / 3;
  m.known = col % 3;
  m.end_only = s.has_end;
  m.end_allowed = col == 0 && row >= 1;
  m.excluded = -1;
  m.hi = K - 1;
  const bool after = row >= 1;  // a previous face exists
  const int64_t p1 = s.previous_first, pl = s.previous_low, ph = s.previous_high;
  if (slot == 0) {
    m.hi = K - 3;
    m.lo = !after ? 0 : p1 + ((pl > K - 2 || (pl == K - 2 && ph >= K - 1)) ? 1 : 0);
  } else {
    const int64_t v1 = vertex_key(s.row);
    const bool tie = after && v1 == p1;
    m.lo = v1 + 1;
    if ((after && v1 < p1) || v1 > K - 3) {
      m.lo = K;  // nothing
    } else if (slot == 1) {
      if (tie) {
        const int64_t least = pl + (ph >= K - 1 ? 1 : 0);
        if (least > m.lo) m.lo = least;
        if (least > K - 2) m.lo = K;  // the previous pair is already the largest
      }
    } else {
      const int64_t v2 = vertex_key(s.row + 3);
      m.excluded = v2;
      if (v2 <= v1) {
        m.lo = K;
      } else if (tie) {
        const int64_t least = v2 < pl ? K : v2 == pl ? ph + 1 : v2 > ph ? pl : pl + 1;
        if (least > m.lo) m.lo = least;
      }
    }
  }
  for (int i = 0; i < 3; i++) m.vertex[i] = i < m.known ? s.row[3 * slot + i] : 0;
  // Some coordinate is allowed iff the vertex can be completed as it stands: the
  // completions after one more token c, over all c in 0..128, are exactly the
  // completions now. When none is (only after a prompt that breaks the rules),
  // END is allowed, as allowed_next_tokens() does.
  if (!vertex_completable(m.vertex, m.known, m.lo, m.hi, m.excluded)) m.end_allowed = 1;
  return m;
}

IFLAME_HD bool constraint_allows(const ConstraintMask& m, int32_t token) {
  if (m.end_only) return token == kEndToken;
  if (token == kEndToken) return m.end_allowed != 0;
  if (token < 0 || token >= kNumCoordinateTokens) return false;
  const int32_t v[3] = {m.known == 0 ? token : m.vertex[0], m.known == 1 ? token : m.vertex[1],
                        m.known == 2 ? token : m.vertex[2]};  // no indexing by a variable: stays in registers
  return vertex_completable(v, m.known + 1, m.lo, m.hi, m.excluded);
}

// ------------------------------------------------------------------ one row's progress

// A sequence being sampled. Its tokens live in a history row of capacity + 1
// slots (capacity = the positions that can be fed; the step at capacity - 1
// predicts token `capacity`, kept only if it is END). Each row counts its own
// steps (`position`), so a step's device work takes no position argument and
// one block per row never reads another block's row: graph-safe.
struct SampleRow {
  ConstraintState constraint;  // of the tokens in the history (kept up to date when unconstrained too)
  uint64_t sample_id;          // names the row's draws
  int32_t position;            // the position fed by the step whose logits come next
  int32_t length;              // tokens in the history: prompt + accepted draws
  int32_t done;                // no more draws: END drawn or face limit reached
  int32_t ended;               // END drawn
  int32_t draws;               // tokens drawn, END and a draw dropped at the face limit included
                               // (over every sample the row has held)
  int32_t idle;                // continuous batching: no sample left for the row
};

// What is kept of a sample once it is done (its tokens stay in its history row).
struct SampleEnd {
  int32_t length;  // tokens in its history
  int32_t ended;   // END drawn
};

// Does the row draw from the logits of the step that fed `position`? Only while
// active, and only when the token they predict (position + 1) is the next unknown
// one: while the prompt is being fed it is already known.
IFLAME_HD bool row_draws_at(const SampleRow& r, int64_t position) { return !r.done && r.length == position + 1; }

// Takes the token drawn at the step that fed `position`: appended unless the
// face limit is reached (position + 1 == capacity), where only END is kept.
// Returns true when the row is done with this draw.
IFLAME_HD bool accept_draw(SampleRow& r, int32_t* history_row, int32_t token, int64_t position, int64_t capacity) {
  r.draws++;
  if (token == kEndToken || position + 1 < capacity) {
    history_row[r.length++] = token;
    constraint_push(r.constraint, token);
    if (token != kEndToken) return false;
    r.ended = 1;
  }
  r.done = 1;
  return true;
}

// Continuous batching: may the row take the next sample now? When it is done
// and its next position is a face boundary (0 mod 9): rows start over at 0, so
// every row's position stays in the batch's phase (the hourglass runs its coarse
// levels for every row at once). A row that draws END does so at a face
// boundary under the constraint, and the face limit is one, so it waits only
// when the unconstrained model ends mid-face.
IFLAME_HD bool row_can_refill(const SampleRow& r) { return r.done && r.position % kTokensPerFace == 0; }

// The row takes sample `index` (first_sample_id + index names its draws) from
// `fresh`, the state after the prompt, or goes idle when index >= samples
// (done, still fed from position 0 so its decoder rows stay within capacity).
IFLAME_HD void refill_row(SampleRow& r, const SampleRow& fresh, int64_t index, int64_t samples,
                          uint64_t first_sample_id) {
  const int32_t draws = r.draws;
  if (index < samples) {
    r = fresh;
    r.sample_id = first_sample_id + index;
  } else {
    r.idle = 1;
    r.position = 0;
  }
  r.draws = draws;
}

// Is the row's sample still being fed at its next step (in its prompt or
// drawing)? Not once it is done or idle (an idle row is done too): a dead row's
// step computes nothing anyone reads (its logits are not drawn from; a new sample
// starts it over at position 0 with its states zeroed and its cache rows
// rewritten before they are read), so the decoder may skip its attention
// (DecodeState::row_live, infer/decode.h).
IFLAME_HD int32_t row_is_live(const SampleRow& r) { return r.done ? 0 : 1; }

// The token to feed at position + 1: the row's token there, or its last token
// once the row is done (done rows keep being fed so the batch stays in lockstep).
IFLAME_HD int32_t next_feed(const SampleRow& r, const int32_t* history_row, int64_t position) {
  const int64_t last = r.length - 1;
  return history_row[position + 1 < last ? position + 1 : last];
}

// The end of a step for the row, drawn or not: its next feed token, and its step
// count moves on.
IFLAME_HD int32_t finish_step(SampleRow& r, const int32_t* history_row) {
  const int32_t feed = next_feed(r, history_row, r.position);
  r.position++;
  return feed;
}

}  // namespace iflame::ops
